"""The gateway's metrics, read from the OpenTelemetry meter after the real thing happened:
forged webhook signatures, a Stripe breaker that opens, reconciliation settling a write the
ledger lost track of (and the refund it made), events no webhook delivered, and a failed
payment's recovery case opened and recovered."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import aiohttp
import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.domain import signatures
from billing_gateway.ledger import SimulatedCrash
from billing_gateway.tests.conftest import WORKSPACE, Stack, key, usd
from runtime import testing

SIGNATURE_FAILURES = "askvault.billing.webhook.signature_failures"
BREAKERS_OPEN = "askvault.billing.stripe.breakers_open"
DIFFERENCES = "askvault.billing.reconciliation.differences"
REFUNDS = "askvault.billing.refunds"
REFUNDED_AMOUNT = "askvault.billing.refunded_amount"
CASES_OPENED = "askvault.billing.recovery.cases_opened"
CASES_CLOSED = "askvault.billing.recovery.cases_closed"


def _signing_secret(stack: Stack) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return str(next(iter(account.table("webhook_secret").values()))["secret"])


async def test_refused_webhook_signatures_are_counted_by_reason(stack: Stack) -> None:
    payload = json.dumps(
        {"id": "evt_metrics", "type": "customer.created", "created": int(time.time()), "data": {}}
    ).encode()
    secret, now = _signing_secret(stack), int(time.time())
    refused = (
        signatures.sign(payload, "whsec_forged", now),
        signatures.sign(payload + b" ", secret, now),
        signatures.sign(payload, secret, now - 3600),
    )
    with testing.captured_metrics() as captured:
        for header in refused:
            with pytest.raises(grpc.aio.AioRpcError):
                await stack.billing.IngestStripeEvent(
                    pb.IngestStripeEventRequest(
                        workspace_id=WORKSPACE, payload=payload, signature_header=header
                    )
                )
        await stack.billing.IngestStripeEvent(
            pb.IngestStripeEventRequest(
                workspace_id=WORKSPACE,
                payload=payload,
                signature_header=signatures.sign(payload, secret, now),
            )
        )
        assert captured.value(SIGNATURE_FAILURES, reason="SIGNATURE_INVALID") == 2
        assert captured.value(SIGNATURE_FAILURES, reason="SIGNATURE_TIMESTAMP_OUT_OF_RANGE") == 1
        assert captured.value(SIGNATURE_FAILURES) == 3


async def test_the_breakers_gauge_shows_an_open_breaker_until_it_closes(
    slow_breaker_stack: Stack,
) -> None:
    stack = slow_breaker_stack
    alice = await stack.assertion("alice@example.com")
    request = pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=alice)
    with testing.captured_metrics() as captured:
        await stack.billing.GetSubscription(request)
        assert captured.value(BREAKERS_OPEN, state="open") == 0
        stack.emulator.faults.add({"route": "/v1/subscriptions*", "status": 503})
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stack.billing.GetSubscription(request, timeout=2.0)
        assert captured.value(BREAKERS_OPEN, state="open") == 1
        stack.emulator.faults.clear()
        stack.clock.advance(timedelta(seconds=stack.settings.breaker_cooldown_seconds))
        assert captured.value(BREAKERS_OPEN, state="open") == 0
        assert captured.value(BREAKERS_OPEN, state="half_open") == 1
        await stack.billing.GetSubscription(request)
        assert captured.value(BREAKERS_OPEN) == 0


async def test_reconciliation_counts_the_refund_the_ledger_lost_track_of(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(700))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)

    def die(_: object) -> None:
        raise SimulatedCrash("killed between Stripe and the ledger")

    stack.service.ledger.after_stripe_call = die
    with testing.captured_metrics() as captured:
        with pytest.raises(grpc.aio.AioRpcError):
            await stack.billing.RefundCharge(
                pb.RefundChargeRequest(
                    workspace_id=WORKSPACE,
                    identity_assertion=bob,
                    grant_id=grant.grant_id,
                    charge_id=charge,
                    amount=usd(700),
                    idempotency_key=key(),
                )
            )
        # Stripe refunded; the ledger does not know yet.
        assert captured.value(REFUNDS) == 0
        assert captured.value(DIFFERENCES) == 0
        await stack.service.ledger.reconcile(0)
        assert captured.value(DIFFERENCES, difference="operation_succeeded") == 1
        assert captured.value(REFUNDS, currency="usd") == 1
        assert captured.value(REFUNDED_AMOUNT, currency="usd") == 700
        # Settled once: another pass finds no difference.
        await stack.service.ledger.reconcile(0)
        assert captured.value(DIFFERENCES) == 1


async def test_a_refund_made_is_counted_with_its_amount(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(300))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    with testing.captured_metrics() as captured:
        await stack.billing.RefundCharge(
            pb.RefundChargeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=bob,
                grant_id=grant.grant_id,
                charge_id=charge,
                amount=usd(300),
                idempotency_key=key(),
            )
        )
        assert captured.value(REFUNDS, currency="usd") == 1
        assert captured.value(REFUNDED_AMOUNT, currency="usd") == 300
        assert captured.value(DIFFERENCES) == 0


async def test_events_no_webhook_delivered_are_counted_by_the_catch_up(stack: Stack) -> None:
    await stack.service.backfill.all()
    await stack.flush_webhooks()
    await stack.service.events.drain()
    await stack.service.catch_up.all()
    erin_sub = stack.demo["customers"]["erin@example.com"]["subscription"]
    stack.emulator.dispatcher.mode.enabled = False
    await stack.backend.sdk.v1.subscriptions.cancel_async(erin_sub)
    async with stack.running.pool.acquire() as connection:
        await connection.execute("UPDATE mirror_workspaces SET next_catch_up_at = now()")
    with testing.captured_metrics() as captured:
        assert await stack.service.catch_up.all() == 1
        assert captured.value(DIFFERENCES, difference="missed_event") >= 1


async def test_a_recovered_payment_counts_one_case_opened_and_one_recovered(stack: Stack) -> None:
    carol = await stack.assertion("carol@example.com")
    invoice_id = stack.demo["customers"]["carol@example.com"]["invoices"][-1]
    await stack.flush_webhooks()
    await stack.service.events.drain()
    with testing.captured_metrics() as captured:
        with pytest.raises(grpc.aio.AioRpcError):
            await stack.retry_payment(carol, invoice_id)
        await stack.flush_webhooks()
        await stack.service.events.drain()
        assert captured.value(CASES_OPENED, message="sent") == 1
        assert captured.value(CASES_CLOSED) == 0
        link = await stack.billing.CreatePaymentMethodUpdateLink(
            pb.CreatePaymentMethodUpdateLinkRequest(
                workspace_id=WORKSPACE, identity_assertion=carol, idempotency_key=key("link")
            )
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(link.url, data={"payment_method": "pm_card_visa"}) as answer,
        ):
            assert answer.status == 200
        assert (await stack.retry_payment(carol, invoice_id)).paid
        await stack.flush_webhooks()
        await stack.service.events.drain()
        # invoice.paid and invoice.payment_succeeded both close it: counted once.
        assert captured.value(CASES_CLOSED, state="recovered") == 1
        assert captured.value(CASES_OPENED) == 1
