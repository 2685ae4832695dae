"""The gateway through its gRPC API against the emulator, real identity and real policy."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.domain import signatures
from billing_gateway.domain.resilience import BreakerState
from billing_gateway.ledger import SimulatedCrash
from billing_gateway.stripe_api import StripeAccount
from billing_gateway.tests.conftest import WORKSPACE, Stack, key, usd
from runtime import testing


async def _refund_grant(stack: Stack, assertion: str, charge_id: str, amount: int) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge_id, amount=usd(amount))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge_id)["created"]))
    grant = await stack.grant(assertion, common_pb2.BILLING_ACTION_REFUND, details)
    return str(grant.grant_id)


def _refunds_of(stack: Stack, charge_id: str) -> list[dict[str, object]]:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return [r for r in account.all("refund") if r["charge"] == charge_id]


async def test_reads_are_scoped_to_the_assertions_customer(stack: Stack) -> None:
    alice = await stack.assertion("alice@example.com")
    got = await stack.billing.GetSubscription(
        pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=alice)
    )
    sub = got.subscription
    assert sub.plan.name == "Growth" and sub.plan.tier == "growth"
    assert sub.status == pb.SUBSCRIPTION_STATUS_ACTIVE
    assert sub.card_brand == "visa" and sub.card_last4 == "4242"
    assert sub.plan_change_in_place and sub.latest_invoice.status == "paid"
    invoices = await stack.billing.ListInvoices(
        pb.ListInvoicesRequest(workspace_id=WORKSPACE, identity_assertion=alice)
    )
    assert invoices.invoices and all(i.invoice_pdf_url for i in invoices.invoices)
    plans = await stack.billing.ListPlans(
        pb.ListPlansRequest(workspace_id=WORKSPACE, currency="usd")
    )
    assert [p.tier for p in plans.plans] == ["starter", "growth", "business"]
    # Bob's charge asked for with Alice's assertion: NOT_FOUND, no data.
    bob_charge = stack.demo["customers"]["bob@example.com"]["charges"][0]
    with pytest.raises(grpc.aio.AioRpcError) as others:
        await stack.billing.GetSubscription(
            pb.GetSubscriptionRequest(
                workspace_id=WORKSPACE,
                identity_assertion=alice,
                subscription_id=str(stack.demo["customers"]["bob@example.com"]["subscription"]),
            )
        )
    assert testing.error_details(others.value)[:2] == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.RefundCharge(
            pb.RefundChargeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=alice,
                grant_id="gr_x",
                charge_id=bob_charge,
                amount=usd(100),
                idempotency_key=key(),
            )
        )
    assert testing.error_details(refused.value)[:2] == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    unlinked = await stack.assertion("nobody@example.com", link=False)
    with pytest.raises(grpc.aio.AioRpcError) as not_linked:
        await stack.billing.GetSubscription(
            pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=unlinked)
        )
    assert testing.error_details(not_linked.value)[1] == "CUSTOMER_NOT_LINKED"


async def test_duplicate_charges_found(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    found = await stack.billing.FindDuplicateCharges(
        pb.FindDuplicateChargesRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    assert len(found.pairs) == 1
    pair = found.pairs[0]
    assert pair.original.amount == pair.duplicate.amount
    assert pair.original.created_at.seconds < pair.duplicate.created_at.seconds


async def test_refund_needs_a_grant_for_exactly_its_parameters(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    grant_id = await _refund_grant(stack, bob, charge, 500)
    request = pb.RefundChargeRequest(
        workspace_id=WORKSPACE,
        identity_assertion=bob,
        grant_id=grant_id,
        charge_id=charge,
        amount=usd(900),
        reason=pb.REFUND_REASON_DUPLICATE,
        idempotency_key=key("refund"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as other_amount:
        await stack.billing.RefundCharge(request)
    assert testing.error_details(other_amount.value)[1] == "GRANT_INVALID"
    request.grant_id, request.idempotency_key = "gr_unknown", key("refund")
    with pytest.raises(grpc.aio.AioRpcError) as no_grant:
        await stack.billing.RefundCharge(request)
    assert testing.error_details(no_grant.value)[1] == "GRANT_INVALID"
    assert _refunds_of(stack, charge) == []
    request.grant_id, request.amount.amount_minor, request.idempotency_key = grant_id, 500, key()
    first = await stack.billing.RefundCharge(request)
    again = await stack.billing.RefundCharge(request)
    assert first == again and first.operation.state == pb.OPERATION_STATE_SUCCEEDED
    assert first.amount.amount_minor == 500 and len(_refunds_of(stack, charge)) == 1
    # A retry after a lost answer comes with a freshly issued assertion of the same person:
    # the first answer again, no second refund.
    request.identity_assertion = await stack.assertion("bob@example.com")
    assert request.identity_assertion != bob
    assert await stack.billing.RefundCharge(request) == first
    assert len(_refunds_of(stack, charge)) == 1


async def _grant_audit(stack: Stack, grant_id: str) -> list[tuple[str, str]]:
    audit = await stack.policy.ListAuditEvents(
        policy_pb2.ListAuditEventsRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata(),
    )
    return [(e.kind, e.outcome) for e in audit.events if e.subject_id == grant_id]


async def test_refund_of_a_charge_stripe_says_is_old_is_refused_at_redeem(stack: Stack) -> None:
    # The edge supplied a recent charge time and policy granted on it; Stripe says the charge
    # is 40 days old. The gateway sends policy the time it read, and policy refuses.
    bob = await stack.assertion("bob@example.com")
    charge_id = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    charge = account.get("charge", charge_id)
    charge["created"] = int(time.time()) - int(timedelta(days=40).total_seconds())
    details = policy_pb2.ActionDetails(charge_id=charge_id, amount=usd(500))
    details.charge_created_at.FromSeconds(int(time.time()) - 3600)
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.RefundCharge(
            pb.RefundChargeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=bob,
                grant_id=grant.grant_id,
                charge_id=charge_id,
                amount=usd(500),
                idempotency_key=key("refund"),
            )
        )
    assert testing.error_details(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_DETAILS_MISMATCH",
    )
    assert _refunds_of(stack, charge_id) == []
    # Audited, and the grant neither redeemed nor released by the gateway.
    assert [kind for kind, _ in await _grant_audit(stack, grant.grant_id)] == [
        "decision",
        "grant.redeem_refused",
    ]
    assert ("grant.redeem_refused", "REFUSED:GRANT_DETAILS_MISMATCH") in await _grant_audit(
        stack, grant.grant_id
    )


async def test_refund_under_a_grant_in_another_currency_is_refused(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    charge_id = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    await _cover_eur(stack)
    details = policy_pb2.ActionDetails(
        charge_id=charge_id, amount=common_pb2.Money(amount_minor=500, currency="eur")
    )
    details.charge_created_at.FromSeconds(int(account.get("charge", charge_id)["created"]))
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.RefundCharge(
            pb.RefundChargeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=bob,
                grant_id=grant.grant_id,
                charge_id=charge_id,
                amount=usd(500),
                idempotency_key=key("refund"),
            )
        )
    assert testing.error_details(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_INVALID",
    )
    assert _refunds_of(stack, charge_id) == []
    assert ("grant.redeem_refused", "REFUSED:GRANT_INVALID") in await _grant_audit(
        stack, grant.grant_id
    )


async def _cover_eur(stack: Stack) -> None:
    """Adds a EUR refund cap (a loosening: a second admin approves it)."""
    current = await stack.policy.GetBounds(policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE))
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.bounds)
    bounds.ClearField("updated_at")
    bounds.refund_caps.append(common_pb2.Money(amount_minor=1000, currency="eur"))
    proposed = await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key=key("bounds")
        ),
        metadata=testing.admin_metadata(),
    )
    if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
        await stack.policy.ApproveBoundsChange(
            policy_pb2.ApproveBoundsChangeRequest(
                workspace_id=WORKSPACE,
                change_id=proposed.change.change_id,
                idempotency_key=key("approve"),
            ),
            metadata=testing.admin_metadata("admin-bob"),
        )


async def test_crash_after_stripe_refunded_is_reconciled_once(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    grant_id = await _refund_grant(stack, bob, charge, 700)

    def die(_: object) -> None:
        raise SimulatedCrash("killed between Stripe and the ledger")

    stack.service.ledger.after_stripe_call = die
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.billing.RefundCharge(
            pb.RefundChargeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=bob,
                grant_id=grant_id,
                charge_id=charge,
                amount=usd(700),
                idempotency_key=key(),
            )
        )
    assert len(_refunds_of(stack, charge)) == 1
    fresh, settings = stack.fresh_service()
    async with testing.running(fresh, settings):
        touched = await fresh.ledger.reconcile(0)
    assert touched >= 1
    assert len(_refunds_of(stack, charge)) == 1
    audit = await stack.policy.ListAuditEvents(
        policy_pb2.ListAuditEventsRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata(),
    )
    outcomes = [e.outcome for e in audit.events if e.subject_id == grant_id]
    assert any("COMMIT" in outcome.upper() for outcome in outcomes), outcomes
    assert not any("RELEASE" in outcome.upper() for outcome in outcomes)


async def test_signatures_forged_old_and_future_refused(stack: Stack) -> None:
    payload = json.dumps(
        {"id": "evt_sig", "type": "customer.created", "created": int(time.time()), "data": {}}
    ).encode()
    secret = next(
        iter(
            stack.emulator.state.account_for_key(stack.demo["api_key"])
            .table("webhook_secret")
            .values()
        )
    )["secret"]
    now = int(time.time())
    # A minute beyond the 300 s tolerance: one second (as before) let a future signature fall
    # back inside it when the calls took more than a second (seen on a slow run). The exact
    # edge is the domain test's.
    cases = {
        signatures.sign(payload, "whsec_forged", now): "SIGNATURE_INVALID",
        signatures.sign(payload, secret, now - 360): "SIGNATURE_TIMESTAMP_OUT_OF_RANGE",
        signatures.sign(payload, secret, now + 360): "SIGNATURE_TIMESTAMP_OUT_OF_RANGE",
        signatures.sign(payload + b" ", secret, now): "SIGNATURE_INVALID",
    }
    for header, reason in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.billing.IngestStripeEvent(
                pb.IngestStripeEventRequest(
                    workspace_id=WORKSPACE, payload=payload, signature_header=header
                )
            )
        assert testing.error_details(refused.value)[:2] == (grpc.StatusCode.UNAUTHENTICATED, reason)
    good = pb.IngestStripeEventRequest(
        workspace_id=WORKSPACE,
        payload=payload,
        signature_header=signatures.sign(payload, secret, now),
    )
    assert not (await stack.billing.IngestStripeEvent(good)).duplicate
    assert (await stack.billing.IngestStripeEvent(good)).duplicate


async def test_payment_failed_three_deliveries_one_case_one_email(notifier_stack: Stack) -> None:
    stack = notifier_stack
    carol = await stack.assertion("carol@example.com")
    invoice_id = stack.demo["customers"]["carol@example.com"]["invoices"][-1]
    await stack.emulator.dispatcher.flush(10.0)
    await stack.service.events.drain()
    stack.deliveries.clear()
    grant = await stack.grant(
        carol,
        common_pb2.BILLING_ACTION_RETRY_PAYMENT,
        policy_pb2.ActionDetails(invoice_id=invoice_id),
    )
    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stack.billing.RetryInvoicePayment(
            pb.RetryInvoicePaymentRequest(
                workspace_id=WORKSPACE,
                identity_assertion=carol,
                grant_id=grant.grant_id,
                invoice_id=invoice_id,
                idempotency_key=key(),
            )
        )
    assert testing.error_details(declined.value)[1] == "CARD_DECLINED"
    await stack.flush_webhooks()
    failed = [
        (body, header)
        for body, header, _ in stack.deliveries
        if json.loads(body)["type"] == "invoice.payment_failed"
    ]
    assert failed
    for body, header in failed[:1] * 2:  # the same delivery twice more
        again = await stack.billing.IngestStripeEvent(
            pb.IngestStripeEventRequest(
                workspace_id=WORKSPACE, payload=body, signature_header=header
            )
        )
        assert again.duplicate
    await stack.service.events.drain()
    # The real notifier took the message (its template's variables) and emailed it once.
    assert stack.sink is not None
    emails = await stack.sink.store.wait_for(1, 10.0, to="carol@example.com")
    assert "did not go through" in emails[0].subject and "49.00 USD" in emails[0].subject
    hosted = json.loads(failed[0][0])["data"]["object"]["hosted_invoice_url"]
    assert hosted in emails[0].text
    failed_event = json.loads(failed[0][0])["id"]
    status = await stack.event_status(failed_event)
    assert status is not None and status.processed_at is not None and status.outcome == ""
    await stack.service.events.drain()
    assert len(stack.sink.store.select(to="carol@example.com")) == 1
    cases = await stack.billing.ListRecoveryCases(
        pb.ListRecoveryCasesRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    assert [c.invoice_id for c in cases.cases] == [invoice_id]
    assert cases.cases[0].state == pb.RECOVERY_STATE_OPEN


async def test_subscription_events_out_of_order_newest_state_wins(stack: Stack) -> None:
    alice = await stack.assertion("alice@example.com")
    await stack.flush_webhooks()
    await stack.service.events.drain()
    stack.deliveries.clear()
    sub_id = str(stack.demo["customers"]["alice@example.com"]["subscription"])
    business = stack.demo["products"]["business"]["prices"]["usd"]
    grant = await stack.grant(
        alice,
        common_pb2.BILLING_ACTION_CHANGE_PLAN,
        policy_pb2.ActionDetails(subscription_id=sub_id, target_price_id=business),
    )
    changed = await stack.billing.ChangePlan(
        pb.ChangePlanRequest(
            workspace_id=WORKSPACE,
            identity_assertion=alice,
            grant_id=grant.grant_id,
            subscription_id=sub_id,
            target_price_id=business,
            idempotency_key=key(),
        )
    )
    assert changed.subscription.plan.tier == "business"
    assert "SSO and audit log" in changed.features_gained
    await stack.flush_webhooks()
    updates = [
        (body, header)
        for body, header, _ in stack.deliveries
        if json.loads(body)["type"] == "customer.subscription.updated"
    ]
    assert updates
    # Delivered again, oldest last: nothing new is stored, the newest state stays.
    for body, header in reversed(updates * 2):
        await stack.billing.IngestStripeEvent(
            pb.IngestStripeEventRequest(
                workspace_id=WORKSPACE, payload=body, signature_header=header
            )
        )
    await stack.service.events.drain()
    contacts = await stack.identity.FindContactsByCustomer(
        __import__(
            "askvault.identity.v1.identity_pb2", fromlist=["x"]
        ).FindContactsByCustomerRequest(
            workspace_id=WORKSPACE, stripe_customer_id=stack.customer("alice@example.com")
        )
    )
    assert contacts.contacts[0].tags.plan_tier == 4  # PLAN_TIER_BUSINESS


async def test_upi_plan_change_refused(stack: Stack) -> None:
    dev = await stack.assertion("dev@example.in")
    got = await stack.billing.GetSubscription(
        pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=dev)
    )
    assert not got.subscription.plan_change_in_place
    business = stack.demo["products"]["business"]["prices"]["inr"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.ChangePlan(
            pb.ChangePlanRequest(
                workspace_id=WORKSPACE,
                identity_assertion=dev,
                grant_id="gr_any",
                subscription_id=got.subscription.subscription_id,
                target_price_id=business,
                idempotency_key=key(),
            )
        )
    assert testing.error_details(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PLAN_CHANGE_REQUIRES_RESUBSCRIBE",
    )


async def _schedule_cancel(stack: Stack, email: str) -> tuple[str, pb.Operation]:
    assertion = await stack.assertion(email)
    sub_id = str(stack.demo["customers"][email]["subscription"])
    grant = await stack.grant(
        assertion,
        common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION,
        policy_pb2.ActionDetails(subscription_id=sub_id),
    )
    scheduled = await stack.billing.CancelSubscription(
        pb.CancelSubscriptionRequest(
            workspace_id=WORKSPACE,
            identity_assertion=assertion,
            grant_id=grant.grant_id,
            subscription_id=sub_id,
            idempotency_key=key(),
        )
    )
    assert scheduled.operation.state == pb.OPERATION_STATE_SCHEDULED
    return assertion, scheduled.operation


def _status(stack: Stack, email: str) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    sub_id = str(stack.demo["customers"][email]["subscription"])
    return str(account.get("subscription", sub_id)["status"])


async def _undo(stack: Stack, assertion: str, operation_id: str) -> pb.UndoCancellationResponse:
    response: pb.UndoCancellationResponse = await stack.billing.UndoCancellation(
        pb.UndoCancellationRequest(
            workspace_id=WORKSPACE,
            identity_assertion=assertion,
            operation_id=operation_id,
            idempotency_key=key(),
        )
    )
    return response


async def test_undo_one_second_before_grace_wins_one_after_loses(stack: Stack) -> None:
    start = stack.clock.now
    assertion, operation = await _schedule_cancel(stack, "erin@example.com")
    stack.clock.advance(timedelta(seconds=29))
    undone = await _undo(stack, assertion, operation.operation_id)
    assert undone.undone and undone.operation.state == pb.OPERATION_STATE_VOIDED
    assert await stack.service.ledger.run_due_cancellations() == 0
    stack.clock.now = start
    assertion, operation = await _schedule_cancel(stack, "erin@example.com")
    stack.clock.advance(timedelta(seconds=31))
    late = await _undo(stack, assertion, operation.operation_id)
    assert not late.undone
    assert await stack.service.ledger.run_due_cancellations() == 1
    assert _status(stack, "erin@example.com") == "canceled"
    final = await stack.billing.GetOperation(
        pb.GetOperationRequest(workspace_id=WORKSPACE, operation_id=operation.operation_id),
        metadata=testing.admin_metadata(),
    )
    assert final.operation.state == pb.OPERATION_STATE_SUCCEEDED


async def test_undo_racing_the_runner_resolves_once(stack: Stack) -> None:
    assertion, operation = await _schedule_cancel(stack, "alice@example.com")
    stack.clock.advance(timedelta(seconds=30) - timedelta(milliseconds=1))
    # The undo is still in time by the clock; move it past the grace while both race.
    undo = asyncio.create_task(_undo(stack, assertion, operation.operation_id))
    stack.clock.advance(timedelta(milliseconds=2))
    ran = asyncio.create_task(stack.service.ledger.run_due_cancellations())
    undone, count = await asyncio.gather(undo, ran)
    if not undone.undone and count == 0:
        # The undo held the row (and found it past due) while the runner looked: the runner
        # skips locked rows, so the cancellation is its next pass's, as in production.
        count = await stack.service.ledger.run_due_cancellations()
    assert undone.undone != (count == 1)
    canceled = _status(stack, "alice@example.com") == "canceled"
    assert canceled == (count == 1)


async def test_faults_answer_unavailable_fast_and_the_breaker_opens_then_closes(
    slow_breaker_stack: Stack,
) -> None:
    stack = slow_breaker_stack
    alice = await stack.assertion("alice@example.com")
    request = pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=alice)
    await stack.billing.GetSubscription(request)
    stack.emulator.faults.add({"route": "/v1/subscriptions*", "status": 503})
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stack.billing.GetSubscription(request, timeout=2.0)
        assert testing.error_details(down.value)[:2] == (
            grpc.StatusCode.UNAVAILABLE,
            "STRIPE_UNAVAILABLE",
        )
    account = StripeAccount(WORKSPACE, stack.backend.api_key)
    assert stack.service.gateway.breaker_state(account) is BreakerState.OPEN
    stack.emulator.faults.clear()
    with pytest.raises(grpc.aio.AioRpcError) as still_open:
        await stack.billing.GetSubscription(request)
    assert testing.error_details(still_open.value)[1] == "STRIPE_UNAVAILABLE"
    # The cooldown passes on the breaker's clock, not by sleeping: however slow the machine,
    # the breaker was still open above and is half-open now.
    stack.clock.advance(timedelta(seconds=stack.settings.breaker_cooldown_seconds))
    assert stack.service.gateway.breaker_state(account) is BreakerState.HALF_OPEN
    recovered = await stack.billing.GetSubscription(request)
    assert recovered.subscription.plan.tier == "growth"
    assert stack.service.gateway.breaker_state(account) is BreakerState.CLOSED
