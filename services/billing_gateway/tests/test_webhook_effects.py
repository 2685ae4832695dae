"""Webhook effects, recovery and the remaining RPCs against the seeded emulator."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2
from billing_gateway import inbox_store
from billing_gateway.domain import signatures
from billing_gateway.event_burst import Burst
from billing_gateway.tests.conftest import WORKSPACE, Stack, key
from runtime import testing

CAROL = "carol@example.com"


def _secret(stack: Stack) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return str(next(iter(account.table("webhook_secret").values()))["secret"])


async def _ingest(stack: Stack, event: dict[str, Any]) -> str:
    payload = json.dumps(event).encode()
    header = signatures.sign(payload, _secret(stack), int(time.time()))
    response = await stack.billing.IngestStripeEvent(
        pb.IngestStripeEventRequest(
            workspace_id=WORKSPACE, payload=payload, signature_header=header
        )
    )
    return str(response.event_id)


async def _settled(stack: Stack) -> None:
    """Everything Stripe has to say delivered and processed."""
    await stack.flush_webhooks()
    await stack.service.events.drain()


async def _tags(stack: Stack, email: str) -> identity_pb2.ContactTags:
    found = await stack.identity.FindContactsByCustomer(
        identity_pb2.FindContactsByCustomerRequest(
            workspace_id=WORKSPACE, stripe_customer_id=stack.customer(email)
        )
    )
    tags: identity_pb2.ContactTags = found.contacts[0].tags
    return tags


async def _cases(stack: Stack) -> list[pb.RecoveryCase]:
    listed = await stack.billing.ListRecoveryCases(
        pb.ListRecoveryCasesRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    return list(listed.cases)


async def test_card_updated_on_the_portal_then_retry_recovers_the_case(stack: Stack) -> None:
    carol = await stack.assertion(CAROL)
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    await _settled(stack)
    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stack.retry_payment(carol, invoice_id)
    assert testing.error_details(declined.value)[1] == "CARD_DECLINED"
    await _settled(stack)
    [case] = await _cases(stack)
    assert case.invoice_id == invoice_id and case.state == pb.RECOVERY_STATE_OPEN
    link = await stack.billing.CreatePaymentMethodUpdateLink(
        pb.CreatePaymentMethodUpdateLinkRequest(
            workspace_id=WORKSPACE, identity_assertion=carol, idempotency_key=key("link")
        )
    )
    assert link.kind == pb.UPDATE_LINK_KIND_BILLING_PORTAL
    # The customer presses the portal page's button: the test Visa becomes the default.
    async with (
        aiohttp.ClientSession() as http,
        http.post(link.url, data={"payment_method": "pm_card_visa"}) as answer,
    ):
        assert answer.status == 200
    paid = await stack.retry_payment(carol, invoice_id)
    assert paid.paid and paid.invoice.status == "paid"
    assert paid.operation.state == pb.OPERATION_STATE_SUCCEEDED
    await _settled(stack)
    [case] = await _cases(stack)
    assert case.state == pb.RECOVERY_STATE_RECOVERED
    assert "payment_succeeded" in [event.kind for event in case.timeline]
    stats = await stack.billing.GetRecoveryStats(
        pb.GetRecoveryStatsRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    assert (stats.failed, stats.recovered_within_48h, stats.recovered) == (1, 1, 1)
    assert stats.recovery_rate == pytest.approx(1.0)


async def test_update_link_falls_back_to_the_hosted_invoice(stack: Stack) -> None:
    carol = await stack.assertion(CAROL)
    stack.emulator.faults.add(
        {"route": "POST /v1/billing_portal/sessions", "status": 400, "times": 1}
    )
    link = await stack.billing.CreatePaymentMethodUpdateLink(
        pb.CreatePaymentMethodUpdateLinkRequest(
            workspace_id=WORKSPACE, identity_assertion=carol, idempotency_key=key("link")
        )
    )
    assert link.kind == pb.UPDATE_LINK_KIND_HOSTED_INVOICE
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    assert link.url == account.get("invoice", invoice_id)["hosted_invoice_url"]


async def test_recovery_stats_count_failed_and_48h_recoveries(stack: Stack) -> None:
    carol = await stack.assertion(CAROL)
    customer = stack.customer(CAROL)
    opened = int(time.time()) - 3 * 86_400
    for number, closed_after in ((1, 3600), (2, 49 * 3600), (3, None)):
        invoice = {"id": f"in_stats_{number}", "customer": customer, "amount_due": 1000}
        await _ingest(
            stack,
            {
                "id": f"evt_fail_{number}",
                "type": "invoice.payment_failed",
                "created": opened,
                "data": {"object": {**invoice, "currency": "usd", "attempt_count": 1}},
            },
        )
        if closed_after is not None:
            await _ingest(
                stack,
                {
                    "id": f"evt_paid_{number}",
                    "type": "invoice.payment_succeeded",
                    "created": opened + closed_after,
                    "data": {"object": invoice},
                },
            )
        await stack.service.events.drain()
    assert carol
    stats = await stack.billing.GetRecoveryStats(
        pb.GetRecoveryStatsRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    assert (stats.failed, stats.recovered_within_48h, stats.recovered) == (3, 1, 2)
    assert stats.recovery_rate == pytest.approx(1 / 3)
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.billing.GetRecoveryStats(pb.GetRecoveryStatsRequest(workspace_id=WORKSPACE))
    assert testing.error_details(anonymous.value)[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_refund_confirmation_and_offboarding_messages(stack: Stack) -> None:
    await stack.assertion("bob@example.com")
    bob = stack.customer("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    await _ingest(
        stack,
        {
            "id": "evt_refunded",
            "type": "charge.refunded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": charge,
                    "customer": bob,
                    "amount_refunded": 1900,
                    "currency": "usd",
                }
            },
        },
    )
    sub_id = stack.demo["customers"]["bob@example.com"]["subscription"]
    await _ingest(
        stack,
        {
            "id": "evt_deleted",
            "type": "customer.subscription.deleted",
            "created": int(time.time()),
            "data": {"object": {"id": sub_id, "customer": bob, "status": "canceled", "items": {}}},
        },
    )
    await stack.service.events.drain()
    [refund] = stack.notifier.messages(notifier_pb2.TEMPLATE_REFUND_CONFIRMATION)
    assert refund.variables["amount"] == "19.00 USD" and refund.variables["reference"] == charge
    assert refund.recipient.email == "bob@example.com"
    [goodbye] = stack.notifier.messages(notifier_pb2.TEMPLATE_OFFBOARDING)
    assert goodbye.recipient.email == "bob@example.com"
    assert (await _tags(stack, "bob@example.com")).customer_status == (
        identity_pb2.CUSTOMER_STATUS_CANCELED
    )


async def test_events_wait_while_identity_or_the_notifier_is_down(stack: Stack) -> None:
    await stack.assertion("bob@example.com")
    bob = stack.customer("bob@example.com")
    refunded = {
        "id": "evt_refund_down",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {
            "object": {"id": "ch_x", "customer": bob, "amount_refunded": 5, "currency": "usd"}
        },
    }
    peers = stack.service.peers
    working_identity = peers.identity
    async with grpc.aio.insecure_channel("127.0.0.1:1") as dead:
        peers.identity = identity_pb2_grpc.IdentityServiceStub(dead)
        event_id = await _ingest(stack, refunded)
        await stack.service.events.drain()
        status = await stack.event_status(event_id)
        assert status is not None and status.processed_at is None and status.attempts == 1
        assert "DEPENDENCY_UNAVAILABLE" in status.last_error
    peers.identity = working_identity
    stack.notifier.unavailable = True
    await stack.make_events_due()
    await stack.service.events.drain()
    status = await stack.event_status(event_id)
    assert status is not None and status.processed_at is None and status.attempts == 2
    assert stack.notifier.messages(notifier_pb2.TEMPLATE_REFUND_CONFIRMATION) == []
    stack.notifier.unavailable = False
    await stack.make_events_due()
    assert await stack.service.events.drain() == 1
    await stack.make_events_due()
    assert await stack.service.events.drain() == 0
    status = await stack.event_status(event_id)
    assert status is not None and status.processed_at is not None and status.outcome == ""
    assert len(stack.notifier.messages(notifier_pb2.TEMPLATE_REFUND_CONFIRMATION)) == 1
    assert len(stack.notifier.requests) == 1


@pytest.mark.parametrize(
    ("code", "processed"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, False),
        (grpc.StatusCode.INVALID_ARGUMENT, True),
        (grpc.StatusCode.FAILED_PRECONDITION, True),
    ],
)
async def test_notifier_refusals(
    stack: Stack, code: grpc.StatusCode, processed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    await stack.assertion("bob@example.com")
    stack.notifier.refuse_with = code
    event_id = await _ingest(
        stack,
        {
            "id": f"evt_refused_{code.name}",
            "type": "charge.refunded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "ch_y",
                    "customer": stack.customer("bob@example.com"),
                    "amount_refunded": 5,
                    "currency": "usd",
                }
            },
        },
    )
    await stack.service.events.drain()
    status = await stack.event_status(event_id)
    assert status is not None and (status.processed_at is not None) == processed
    if processed:
        # Recorded, visible, not retried; INVALID_ARGUMENT (our bug) logged at error.
        assert f"notifier_refused {code.name}" in status.outcome
        await stack.make_events_due()
        assert await stack.service.events.drain() == 0
        errors_logged = [
            r for r in caplog.records if r.levelname == "ERROR" and "notifier refused" in r.message
        ]
        assert bool(errors_logged) == (code == grpc.StatusCode.INVALID_ARGUMENT)
        if errors_logged:
            assert getattr(errors_logged[0], "event_id", "") == event_id
    else:
        # The rate limit passes: the event waits and is sent once it does.
        assert "RATE_LIMITED" in status.last_error or code.name in status.last_error
        stack.notifier.refuse_with = None
        await stack.make_events_due()
        assert await stack.service.events.drain() == 1
        assert len(stack.notifier.messages(notifier_pb2.TEMPLATE_REFUND_CONFIRMATION)) == 1


async def test_older_subscription_event_processed_last_loses(stack: Stack) -> None:
    await stack.assertion("alice@example.com")
    await _settled(stack)
    alice = stack.customer("alice@example.com")
    sub_id = stack.demo["customers"]["alice@example.com"]["subscription"]
    subscription = stack.emulator.state.account_for_key(stack.demo["api_key"]).get(
        "subscription", sub_id
    )
    now = int(time.time())

    def updated(event_id: str, created: int, status: str) -> dict[str, Any]:
        return {
            "id": event_id,
            "type": "customer.subscription.updated",
            "created": created,
            "data": {"object": {"id": sub_id, "customer": alice, "status": status}},
        }

    # The newer event (Stripe said past_due) is processed first ...
    subscription["status"] = "past_due"
    await _ingest(stack, updated("evt_newer", now + 5, "past_due"))
    await stack.service.events.drain()
    assert (await _tags(stack, "alice@example.com")).customer_status == (
        identity_pb2.CUSTOMER_STATUS_PAST_DUE
    )
    # ... then the older one, whose re-fetch sees a stale "active" (a lagging read):
    # identity keeps the state with the later source time.
    subscription["status"] = "active"
    older = await _ingest(stack, updated("evt_older", now - 5, "active"))
    await stack.service.events.drain()
    status = await stack.event_status(older)
    assert status is not None and status.processed_at is not None
    assert (await _tags(stack, "alice@example.com")).customer_status == (
        identity_pb2.CUSTOMER_STATUS_PAST_DUE
    )


async def test_check_webhook_setup(stack: Stack) -> None:
    admin = testing.admin_metadata()
    request = pb.CheckWebhookSetupRequest(workspace_id=WORKSPACE)
    fresh = await stack.billing.CheckWebhookSetup(request, metadata=admin)
    assert fresh.registered and fresh.enabled and list(fresh.missing_event_types) == []
    assert fresh.url == stack.webhook_url
    assert not fresh.HasField("last_event_received_at")
    await _ingest(stack, {"id": "evt_any", "type": "customer.created", "created": int(time.time())})
    seen = await stack.billing.CheckWebhookSetup(request, metadata=admin)
    assert abs(seen.last_event_received_at.seconds - time.time()) < 600
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    endpoint = next(iter(account.table("webhook_endpoint").values()))
    endpoint["status"] = "disabled"
    endpoint["enabled_events"] = ["invoice.payment_failed"]
    broken = await stack.billing.CheckWebhookSetup(request, metadata=admin)
    assert broken.registered and not broken.enabled
    assert "charge.refunded" in broken.missing_event_types
    assert "invoice.payment_failed" not in broken.missing_event_types
    account.table("webhook_endpoint").clear()
    missing = await stack.billing.CheckWebhookSetup(request, metadata=admin)
    assert not missing.registered and not missing.enabled
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.billing.CheckWebhookSetup(request)
    assert testing.error_details(anonymous.value)[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_a_notifier_limit_is_waited_out_to_its_reopening(stack: Stack) -> None:
    await stack.assertion("bob@example.com")
    stack.notifier.limited_for = 1800.0
    event_id = await _ingest(
        stack,
        {
            "id": "evt_limited",
            "type": "charge.refunded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": "ch_l",
                    "customer": stack.customer("bob@example.com"),
                    "amount_refunded": 5,
                    "currency": "usd",
                }
            },
        },
    )
    await stack.service.events.drain()
    async with stack.running.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT attempts, processed_at,"
            " extract(epoch FROM next_attempt_at - now())::float8 AS due_in"
            " FROM stripe_events WHERE event_id = $1",
            event_id,
        )
    assert row is not None and row["processed_at"] is None
    # Due when the limit's window reopens, not after the first backoff step (1 s); the wait
    # is no failed attempt.
    assert 1790 <= row["due_in"] <= 1800
    assert row["attempts"] == 0


def _payment_failed(event_id: str, invoice_id: str, customer_id: str) -> dict[str, Any]:
    """A first failed attempt of an invoice as Stripe reports it."""
    return {
        "id": event_id,
        "type": "invoice.payment_failed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": invoice_id,
                "customer": customer_id,
                "amount_due": 4900,
                "currency": "usd",
                "attempt_count": 1,
            }
        },
    }


async def _failure_messages(stack: Stack, invoice_id: str) -> list[tuple[str, str]]:
    """(contact id, dedup key) of every message the real notifier's outbox holds about the
    invoice's failed payment."""
    connection = await asyncpg.connect(stack.database_url)
    try:
        rows = await connection.fetch(
            "SELECT contact_id, dedup_key FROM notifier.messages"
            " WHERE workspace_id = $1 AND template = 'payment_failed' AND dedup_key LIKE $2"
            " ORDER BY created_at",
            WORKSPACE,
            f"payment-failed-{invoice_id}-%",
        )
    finally:
        await connection.close()
    return [(str(row["contact_id"]), str(row["dedup_key"])) for row in rows]


def _forget_recipients(stack: Stack) -> None:
    """The worker's recipients of a customer, kept for a burst of events, run out: a later
    event looks them up again (and finds the contact just linked)."""
    stack.clock.advance(timedelta(seconds=stack.settings.webhook_recipients_cache_seconds + 1))


async def test_a_failed_invoice_is_told_once_though_its_customer_became_a_contact(
    notifier_stack: Stack,
) -> None:
    # Carol never talked to the bot: her invoice's failure is told to her Stripe customer
    # (standing in for a contact). She then chats, her contact is linked, and her retry of the
    # same invoice fails again: she is not told a second time.
    stack = notifier_stack
    customer = stack.customer(CAROL)
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    await _settled(stack)
    await _ingest(stack, _payment_failed("evt_failed_before_contact", invoice_id, customer))
    await stack.service.events.drain()
    told = await _failure_messages(stack, invoice_id)
    assert [contact for contact, _ in told] == [f"stripe-customer-{customer}"]
    carol = await stack.assertion(CAROL)
    _forget_recipients(stack)
    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stack.retry_payment(carol, invoice_id)
    assert testing.error_details(declined.value)[1] == "CARD_DECLINED"
    await _settled(stack)
    assert await _failure_messages(stack, invoice_id) == told
    [case] = await _cases(stack)
    reports = [event for event in case.timeline if event.kind == "payment_failed"]
    assert case.invoice_id == invoice_id and len(reports) == 2
    assert stack.sink is not None
    await stack.sink.store.wait_for(1, 10.0, to=CAROL)
    await stack.service.events.drain()
    assert len(stack.sink.store.select(to=CAROL)) == 1


async def test_a_failure_told_before_a_crash_is_not_told_again_to_a_new_contact(
    notifier_stack: Stack,
) -> None:
    # The gateway dies after the notifier took the message and before the event's batch
    # committed (nothing of the batch is kept); meanwhile the customer becomes a contact. The
    # event, processed again, repeats the message the notifier already has, to the recipient
    # first chosen.
    stack = notifier_stack
    customer = stack.customer(CAROL)
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    await _settled(stack)
    event_id = await _ingest(stack, _payment_failed("evt_failed_then_crash", invoice_id, customer))
    async with stack.running.pool.acquire() as connection:
        batch = connection.transaction()
        await batch.start()
        [claimed] = await inbox_store.claim_events(connection, 10)
        assert claimed.event_id == event_id
        problems = await stack.service.events.effects.apply(
            Burst(connection, stack.clock()), claimed, json.loads(claimed.payload)
        )
        assert problems == []
        await batch.rollback()
    told = await _failure_messages(stack, invoice_id)
    assert [contact for contact, _ in told] == [f"stripe-customer-{customer}"]
    await stack.assertion(CAROL)
    _forget_recipients(stack)
    assert await stack.service.events.drain() == 1
    status = await stack.event_status(event_id)
    assert status is not None and status.processed_at is not None and status.outcome == ""
    assert await _failure_messages(stack, invoice_id) == told
    [case] = await _cases(stack)
    assert [event.kind for event in case.timeline] == ["payment_failed", "message_sent"]


async def test_every_contact_of_the_first_report_is_told_and_nobody_later(stack: Stack) -> None:
    # Two people of one customer have chatted: both are told of the invoice's failure. A
    # third linked afterwards is not told when the next attempt fails too (the customer was
    # told of that invoice already); the two are not told again.
    customer = stack.customer(CAROL)
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    await stack.assertion(CAROL)
    await stack.assertion("carol.billing@example.com", customer_id=customer)
    await _settled(stack)
    await _ingest(stack, _payment_failed("evt_failed_two_contacts", invoice_id, customer))
    await stack.service.events.drain()
    told = stack.notifier.messages(notifier_pb2.TEMPLATE_PAYMENT_FAILED)
    assert len({m.recipient.contact_id for m in told}) == 2
    await stack.assertion("carol.finance@example.com", customer_id=customer)
    _forget_recipients(stack)
    second = _payment_failed("evt_failed_three_contacts", invoice_id, customer)
    second["data"]["object"]["attempt_count"] = 2
    await _ingest(stack, second)
    await stack.service.events.drain()
    assert stack.notifier.messages(notifier_pb2.TEMPLATE_PAYMENT_FAILED) == told
    # The second report repeated the first two messages word for word (the notifier's
    # dedup answered them), and asked for no other.
    repeated = [r for r in stack.notifier.requests if r.template == told[0].template]
    assert len(repeated) == 4 and all(r in told for r in repeated)
