"""The mirror of Stripe: backfill, webhook ordering, same-second refetches, the catch-up
through the events list, read-your-writes, the freshness bound, and reads that make no
Stripe request at all. Real PostgreSQL, the emulator over HTTP, real gRPC."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway import mirror_store
from billing_gateway.domain import mirroring, signatures
from billing_gateway.domain.mirroring import Decision, Held
from billing_gateway.tests.conftest import WORKSPACE, Stack, _seeded_emulator, _stack, key, usd
from runtime import testing

ALICE = "alice@example.com"
BOB = "bob@example.com"
ERIN = "erin@example.com"


@pytest.fixture
async def mirror_stack(database_url: str) -> AsyncIterator[Stack]:
    """The seeded stack with a backfill of two objects a page (several pages per list)."""
    async with (
        _seeded_emulator() as (backend, demo),
        _stack(database_url, backend, demo, mirror_backfill_page_size=2) as s,
    ):
        yield s


def _account_id(stack: Stack) -> str:
    return str(stack.emulator.state.account_for_key(stack.demo["api_key"]).id)


def _stripe_requests(stack: Stack) -> list[str]:
    """The API requests the emulator served for the demo account so far."""
    return [
        f"{entry.method} {entry.path}"
        for entry in stack.emulator.requests.entries(_account_id(stack))
    ]


async def _status(stack: Stack) -> pb.GetMirrorStatusResponse:
    status: pb.GetMirrorStatusResponse = await stack.billing.GetMirrorStatus(
        pb.GetMirrorStatusRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    return status


async def _warm(stack: Stack) -> None:
    """The backfill done and every webhook so far processed."""
    await stack.service.backfill.all()
    await stack.flush_webhooks()
    await stack.service.events.drain()


async def _subscription(stack: Stack, assertion: str) -> pb.GetSubscriptionResponse:
    answer: pb.GetSubscriptionResponse = await stack.billing.GetSubscription(
        pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=assertion)
    )
    return answer


async def _held(stack: Stack, object_type: str, object_id: str) -> mirror_store.MirroredObject:
    async with stack.running.pool.acquire() as connection:
        found = await mirror_store.get_mirrored(connection, WORKSPACE, object_type, object_id)
    assert found is not None, (object_type, object_id)
    return found


def _secret(stack: Stack) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return str(next(iter(account.table("webhook_secret").values()))["secret"])


async def _deliver(stack: Stack, event: dict[str, Any]) -> None:
    """One event delivered to IngestStripeEvent as Stripe would (signed with the secret)."""
    payload = json.dumps(event, default=str).encode()
    header = signatures.sign(payload, _secret(stack), int(time.time()))
    await stack.billing.IngestStripeEvent(
        pb.IngestStripeEventRequest(
            workspace_id=WORKSPACE, payload=payload, signature_header=header
        )
    )


async def _events_of(stack: Stack, event_type: str, object_id: str) -> list[dict[str, Any]]:
    """The account's events of a type about an object, oldest first, as Stripe lists them."""
    listed = await stack.backend.sdk.v1.events.list_async({"type": event_type, "limit": 100})
    events = [e.to_dict() for e in listed.data]
    found = [e for e in events if e["data"]["object"].get("id") == object_id]
    return sorted(found, key=lambda e: (int(e["created"]), str(e["id"])))


def _same_for_both_sources(message: Any) -> Any:
    message.ClearField("origin")
    return message


# -- rules, without I/O --------------------------------------------------------------------


def test_version_rules() -> None:
    held = Held(100, {"id": "sub_1", "status": "active", "object": "subscription"}, False)
    newer = {"id": "sub_1", "status": "past_due", "object": "subscription"}
    assert mirroring.decide("subscription", held, newer, 101) is Decision.STORE
    assert mirroring.decide("subscription", held, newer, 99) is Decision.IGNORE
    assert mirroring.decide("subscription", held, newer, 100) is Decision.REFETCH
    same = {**held.data, "deleted": False}
    assert mirroring.decide("subscription", held, same, 100) is Decision.CONFIRM
    assert mirroring.decide("subscription", held, same, 101) is Decision.STORE
    # A final version wins a tie without a refetch, whichever side holds it.
    canceled = {**newer, "status": "canceled"}
    assert mirroring.decide("subscription", held, canceled, 100) is Decision.STORE
    final = Held(100, canceled, False)
    assert mirroring.decide("subscription", final, newer, 100) is Decision.IGNORE
    # A payment method keeps its type, brand and last 4 only.
    kept = mirroring.trimmed_payment_method(
        {"id": "pm_1", "type": "card", "card": {"brand": "visa", "last4": "4242", "exp_year": 1}}
    )
    assert kept["card"] == {"brand": "visa", "last4": "4242"}


# -- backfill ------------------------------------------------------------------------------


async def test_backfill_resumes_after_interruption_and_sees_canceled_subscriptions(
    mirror_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = mirror_stack
    erin = await stack.assertion(ERIN)
    erin_sub = stack.demo["customers"][ERIN]["subscription"]
    await stack.backend.sdk.v1.subscriptions.cancel_async(erin_sub)
    everything = await stack.backend.sdk.v1.subscriptions.list_async(
        {"status": "all", "limit": 100}
    )
    assert len(everything.data) > 2  # several pages of two
    caplog.set_level(logging.INFO, logger="billing_gateway.mirror_backfill")

    # Copy pages until the subscriptions list is part-way, then Stripe fails under it.
    for _ in range(50):
        assert await stack.service.backfill.step()
        progress = {b.object_type: b for b in (await _status(stack)).backfills}
        if progress["subscriptions"].pages_copied >= 1:
            break
    copied_before = progress["subscriptions"].objects_copied
    assert not progress["subscriptions"].done and copied_before == 2
    stack.emulator.faults.add({"route": "GET /v1/subscriptions", "status": 500})
    while (await _status(stack)).backfills and not any(
        b.last_error for b in (await _status(stack)).backfills
    ):
        assert await stack.service.backfill.step()
    interrupted = {b.object_type: b for b in (await _status(stack)).backfills}
    assert "STRIPE_UNAVAILABLE" in interrupted["subscriptions"].last_error
    assert interrupted["subscriptions"].objects_copied == copied_before
    assert not (await _status(stack)).backfill_done
    # Until the backfill is done, reads answer from Stripe, and say so.
    stack.emulator.faults.clear()
    assert (await _subscription(stack, erin)).origin.source == pb.READ_SOURCE_STRIPE

    # Resumed (by "another replica": a fresh claim) from the stored cursor.
    async with stack.running.pool.acquire() as connection:
        await connection.execute("UPDATE mirror_backfills SET next_attempt_at = now()")
    await stack.service.backfill.all()
    status = await _status(stack)
    assert status.backfill_done and all(b.done and not b.last_error for b in status.backfills)
    done = {b.object_type: b for b in status.backfills}
    assert done["subscriptions"].objects_copied == len(everything.data)
    canceled = await _held(stack, "subscription", erin_sub)
    assert canceled.data["status"] == "canceled"
    answer = await _subscription(stack, erin)
    assert answer.origin.source == pb.READ_SOURCE_MIRROR
    assert answer.subscription.status == pb.SUBSCRIPTION_STATUS_CANCELED
    assert any(r.getMessage() == "mirror backfill page copied" for r in caplog.records)


# -- reads ---------------------------------------------------------------------------------


async def test_warm_mirror_answers_as_stripe_does_with_no_stripe_request(stack: Stack) -> None:
    alice = await stack.assertion(ALICE)
    bob = await stack.assertion(BOB)
    # Cold: from Stripe.
    cold = await _subscription(stack, alice)
    assert cold.origin.source == pb.READ_SOURCE_STRIPE
    cold_invoices = await stack.billing.ListInvoices(
        pb.ListInvoicesRequest(workspace_id=WORKSPACE, identity_assertion=alice, page_size=3)
    )
    cold_charges = await stack.billing.ListCharges(
        pb.ListChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    cold_pairs = await stack.billing.FindDuplicateCharges(
        pb.FindDuplicateChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    cold_plans = await stack.billing.ListPlans(
        pb.ListPlansRequest(workspace_id=WORKSPACE, currency="usd")
    )
    assert cold_plans.origin.source == pb.READ_SOURCE_STRIPE

    await _warm(stack)
    before = len(_stripe_requests(stack))
    warm = await _subscription(stack, alice)
    warm_invoices = await stack.billing.ListInvoices(
        pb.ListInvoicesRequest(workspace_id=WORKSPACE, identity_assertion=alice, page_size=3)
    )
    second_page = await stack.billing.ListInvoices(
        pb.ListInvoicesRequest(
            workspace_id=WORKSPACE,
            identity_assertion=alice,
            page_size=3,
            page_token=warm_invoices.next_page_token,
        )
    )
    warm_charges = await stack.billing.ListCharges(
        pb.ListChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    warm_pairs = await stack.billing.FindDuplicateCharges(
        pb.FindDuplicateChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    warm_plans = await stack.billing.ListPlans(
        pb.ListPlansRequest(workspace_id=WORKSPACE, currency="usd")
    )
    assert _stripe_requests(stack)[before:] == []
    for answer in (warm, warm_invoices, second_page, warm_charges, warm_pairs, warm_plans):
        assert answer.origin.source == pb.READ_SOURCE_MIRROR
        assert answer.origin.as_of.seconds > 0
    assert _same_for_both_sources(warm) == _same_for_both_sources(cold)
    assert _same_for_both_sources(warm_invoices) == _same_for_both_sources(cold_invoices)
    assert len(second_page.invoices) == 2 and not second_page.next_page_token
    assert _same_for_both_sources(warm_charges) == _same_for_both_sources(cold_charges)
    assert len(warm_pairs.pairs) == 1
    assert _same_for_both_sources(warm_pairs) == _same_for_both_sources(cold_pairs)
    assert _same_for_both_sources(warm_plans) == _same_for_both_sources(cold_plans)


async def test_freshness_bound_falls_back_to_stripe_and_says_so(stack: Stack) -> None:
    alice = await stack.assertion(ALICE)
    await _warm(stack)
    updated = await stack.billing.UpdateMirrorSettings(
        pb.UpdateMirrorSettingsRequest(
            workspace_id=WORKSPACE,
            idempotency_key=key("mirror"),
            max_age=duration_pb2.Duration(seconds=60),
        ),
        metadata=testing.admin_metadata(),
    )
    assert updated.max_age.seconds == 60
    assert (await _status(stack)).max_age.seconds == 60
    assert (await _subscription(stack, alice)).origin.source == pb.READ_SOURCE_MIRROR

    stack.clock.advance(timedelta(seconds=120))
    before = len(_stripe_requests(stack))
    stale = await _subscription(stack, alice)
    assert stale.origin.source == pb.READ_SOURCE_STRIPE
    assert stale.origin.as_of.ToDatetime().replace(tzinfo=stack.clock.now.tzinfo) == stack.clock.now
    assert any(r.startswith("GET /v1/subscriptions") for r in _stripe_requests(stack)[before:])
    # A bad bound changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.UpdateMirrorSettings(
            pb.UpdateMirrorSettingsRequest(
                workspace_id=WORKSPACE,
                idempotency_key=key("mirror"),
                max_age=duration_pb2.Duration(seconds=30 * 86_400),
            ),
            metadata=testing.admin_metadata(),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_age" in str(refused.value.details())
    assert (await _status(stack)).max_age.seconds == 60


# -- webhooks ------------------------------------------------------------------------------


async def test_older_event_arriving_last_does_not_win(stack: Stack) -> None:
    alice = await stack.assertion(ALICE)
    await _warm(stack)
    sub_id = stack.demo["customers"][ALICE]["subscription"]
    stack.emulator.dispatcher.mode.enabled = False
    await stack.backend.sdk.v1.subscriptions.update_async(sub_id, {"cancel_at_period_end": True})
    await asyncio.sleep(1.1)  # the next change in a later second
    await stack.backend.sdk.v1.subscriptions.update_async(sub_id, {"cancel_at_period_end": False})
    older, newer = (await _events_of(stack, "customer.subscription.updated", sub_id))[-2:]
    assert older["created"] < newer["created"]

    await _deliver(stack, newer)
    await _deliver(stack, older)
    await stack.service.events.drain()
    held = await _held(stack, "subscription", sub_id)
    assert held.data["cancel_at_period_end"] is False
    assert held.version_source == f"event:{newer['id']}"
    answer = await _subscription(stack, alice)
    assert answer.origin.source == pb.READ_SOURCE_MIRROR
    assert not answer.subscription.cancel_at_period_end


async def test_two_versions_in_one_second_are_refetched(stack: Stack) -> None:
    await stack.assertion(ALICE)
    await _warm(stack)
    sub_id = stack.demo["customers"][ALICE]["subscription"]
    stack.emulator.dispatcher.mode.enabled = False
    for _ in range(5):
        # Two changes within one second (tried again when a second boundary fell between).
        while time.time() % 1 > 0.5:
            await asyncio.sleep(0.05)
        await stack.backend.sdk.v1.subscriptions.update_async(sub_id, {"metadata": {"step": "one"}})
        await stack.backend.sdk.v1.subscriptions.update_async(sub_id, {"metadata": {"step": "two"}})
        first, second = (await _events_of(stack, "customer.subscription.updated", sub_id))[-2:]
        if first["created"] == second["created"]:
            break
    assert first["created"] == second["created"]

    # (The webhook worker reads the subscription from the mirror, not from Stripe: a read of
    # it at Stripe is the refetch. It comes with whichever version meets the other one in the
    # same second: a delivery still in flight when the dispatcher stopped can be either.)
    before = len(_stripe_requests(stack))
    await _deliver(stack, second)
    await stack.service.events.drain()
    await _deliver(stack, first)  # same second, different data: cannot be ordered by time
    await stack.service.events.drain()
    assert f"GET /v1/subscriptions/{sub_id}" in _stripe_requests(stack)[before:]
    held = await _held(stack, "subscription", sub_id)
    assert held.version_source == "refetch"
    assert held.data["metadata"]["step"] == "two"


async def test_catch_up_through_the_events_list_after_missed_webhooks(stack: Stack) -> None:
    erin = await stack.assertion(ERIN)
    await _warm(stack)
    await stack.service.catch_up.all()
    await stack.service.events.drain()
    erin_sub = stack.demo["customers"][ERIN]["subscription"]
    # Webhook delivery stops; Stripe keeps changing.
    stack.emulator.dispatcher.mode.enabled = False
    await stack.backend.sdk.v1.subscriptions.cancel_async(erin_sub)
    await stack.service.events.drain()
    assert (await _held(stack, "subscription", erin_sub)).data["status"] == "trialing"

    async with stack.running.pool.acquire() as connection:
        await connection.execute("UPDATE mirror_workspaces SET next_catch_up_at = now()")
    before = len(_stripe_requests(stack))
    assert await stack.service.catch_up.all() == 1
    assert any(r == "GET /v1/events" for r in _stripe_requests(stack)[before:])
    await stack.service.events.drain()
    held = await _held(stack, "subscription", erin_sub)
    assert held.data["status"] == "canceled" and held.version_source.startswith("event:")
    answer = await _subscription(stack, erin)
    assert answer.origin.source == pb.READ_SOURCE_MIRROR
    assert answer.subscription.status == pb.SUBSCRIPTION_STATUS_CANCELED
    assert (await _status(stack)).caught_up_to.seconds >= int(time.time()) - 5
    # Not due again until the interval passed: another replica's pass finds nothing.
    assert await stack.service.catch_up.all() == 0


# -- writes --------------------------------------------------------------------------------


async def test_read_your_writes_after_a_refund_and_a_plan_change(stack: Stack) -> None:
    alice = await stack.assertion(ALICE)
    bob = await stack.assertion(BOB)
    await _warm(stack)
    charge = stack.demo["customers"][BOB]["charges"][-1]
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(500))
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    await stack.billing.RefundCharge(
        pb.RefundChargeRequest(
            workspace_id=WORKSPACE,
            identity_assertion=bob,
            charge_id=charge,
            amount=usd(500),
            grant_id=grant.grant_id,
            idempotency_key=key("refund"),
        )
    )
    before = len(_stripe_requests(stack))
    charges = await stack.billing.ListCharges(
        pb.ListChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    assert charges.origin.source == pb.READ_SOURCE_MIRROR
    refunded = next(c for c in charges.charges if c.charge_id == charge)
    assert refunded.amount_refunded.amount_minor == 500

    sub_id = stack.demo["customers"][ALICE]["subscription"]
    starter = stack.demo["products"]["starter"]["prices"]["usd"]
    grant = await stack.grant(
        alice,
        common_pb2.BILLING_ACTION_CHANGE_PLAN,
        policy_pb2.ActionDetails(subscription_id=sub_id, target_price_id=starter),
    )
    await stack.billing.ChangePlan(
        pb.ChangePlanRequest(
            workspace_id=WORKSPACE,
            identity_assertion=alice,
            subscription_id=sub_id,
            target_price_id=starter,
            grant_id=grant.grant_id,
            idempotency_key=key("change"),
        )
    )
    before = len(_stripe_requests(stack))
    answer = await _subscription(stack, alice)
    assert answer.origin.source == pb.READ_SOURCE_MIRROR
    assert answer.subscription.plan.price_id == starter
    assert _stripe_requests(stack)[before:] == []


async def test_a_deleted_customer_leaves_the_mirror_answering_nothing_for_it(
    stack: Stack,
) -> None:
    bob = await stack.assertion(BOB)
    await _warm(stack)
    await stack.backend.sdk.v1.customers.delete_async(stack.customer(BOB))
    await stack.flush_webhooks()
    await stack.service.events.drain()
    assert (await _held(stack, "customer", stack.customer(BOB))).deleted
    # The mirror does not answer for a deleted customer: Stripe does.
    charges = await stack.billing.ListCharges(
        pb.ListChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    assert charges.origin.source == pb.READ_SOURCE_STRIPE


async def test_find_customers_from_the_mirror(stack: Stack) -> None:
    await _warm(stack)
    alice = stack.customer(ALICE)
    # The demo customers carry their user id under metadata askvault_user_id.
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    user_id = account.get("customer", alice)["metadata"]["askvault_user_id"]
    before = len(_stripe_requests(stack))
    by_email = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, email="ALICE@example.com")
    )
    by_id = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, stripe_customer_id=alice)
    )
    by_metadata = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(
            workspace_id=WORKSPACE,
            metadata=pb.MetadataQuery(key="askvault_user_id", value=user_id),
        )
    )
    assert _stripe_requests(stack)[before:] == []
    for answer in (by_email, by_id, by_metadata):
        assert answer.origin.source == pb.READ_SOURCE_MIRROR
        assert [c.stripe_customer_id for c in answer.customers] == [alice]
    assert by_metadata.customers[0].metadata_value == user_id
    # Nobody held: Stripe is asked (a customer created a moment ago may not be here yet).
    nobody = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, email="nobody@example.com")
    )
    assert nobody.origin.source == pb.READ_SOURCE_STRIPE and not nobody.customers


async def test_a_signed_event_cannot_put_its_own_invoice_link_in_the_mirror(
    stack: Stack,
) -> None:
    alice = await stack.assertion(ALICE)
    await _warm(stack)
    invoice_id = stack.demo["customers"][ALICE]["invoices"][-1]
    genuine = await _held(stack, "invoice", invoice_id)
    forged = {
        **genuine.data,
        "hosted_invoice_url": "https://pay.evil.example/i/123",
        "invoice_pdf": "https://pay.evil.example/i/123.pdf",
    }
    await _deliver(
        stack,
        {
            "id": "evt_forged_link",
            "object": "event",
            "type": "invoice.updated",
            "created": int(time.time()) + 5,
            "data": {"object": forged},
        },
    )
    before = len(_stripe_requests(stack))
    await stack.service.events.drain()
    held = await _held(stack, "invoice", invoice_id)
    assert held.data["hosted_invoice_url"] == genuine.data["hosted_invoice_url"]
    assert held.data["invoice_pdf"] == genuine.data["invoice_pdf"]
    # Not taken from the payload: read from Stripe instead.
    assert f"GET /v1/invoices/{invoice_id}" in _stripe_requests(stack)[before:]
    invoices = await stack.billing.ListInvoices(
        pb.ListInvoicesRequest(workspace_id=WORKSPACE, identity_assertion=alice)
    )
    assert invoices.origin.source == pb.READ_SOURCE_MIRROR
    assert all("evil" not in i.hosted_invoice_url for i in invoices.invoices)


async def test_plan_change_preview_asks_stripe_only_for_the_proration(stack: Stack) -> None:
    alice = await stack.assertion(ALICE)
    starter = stack.demo["products"]["starter"]["prices"]["usd"]
    request = pb.PreviewPlanChangeRequest(
        workspace_id=WORKSPACE, identity_assertion=alice, target_price_id=starter
    )
    cold = await stack.billing.PreviewPlanChange(request)
    await _warm(stack)
    before = len(_stripe_requests(stack))
    warm = await stack.billing.PreviewPlanChange(request)
    assert _stripe_requests(stack)[before:] == ["POST /v1/invoices/create_preview"]
    for field in (
        "current_plan",
        "target_plan",
        "price_difference",
        "features_gained",
        "features_lost",
        "subscription_id",
        "plan_change_in_place",
        "next_invoice_at",
    ):
        assert getattr(warm, field) == getattr(cold, field), field
    assert warm.proration_amount.currency == "usd" and warm.proration_amount.amount_minor < 0
