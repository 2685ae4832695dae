"""The confirmations of the gateway's writes: plan changed, cancellation scheduled and undone,
off-boarding once the subscription ended; each sent once per action, with its content."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway import operation_store
from billing_gateway.ledger import SimulatedCrash
from billing_gateway.tests.conftest import WORKSPACE, Stack, key
from runtime import testing


async def _plan_change(stack: Stack, name: str) -> pb.ChangePlanRequest:
    """Alice's move to Business, under a grant of its own."""
    alice = await stack.assertion("alice@example.com")
    sub_id = str(stack.demo["customers"]["alice@example.com"]["subscription"])
    business = stack.demo["products"]["business"]["prices"]["usd"]
    grant = await stack.grant(
        alice,
        common_pb2.BILLING_ACTION_CHANGE_PLAN,
        policy_pb2.ActionDetails(subscription_id=sub_id, target_price_id=business),
    )
    return pb.ChangePlanRequest(
        workspace_id=WORKSPACE,
        identity_assertion=alice,
        grant_id=grant.grant_id,
        subscription_id=sub_id,
        target_price_id=business,
        idempotency_key=key(name),
    )


def _plan_change_confirmation(stack: Stack) -> notifier_pb2.SendRequest:
    """The one confirmation of Alice's move to Business, checked for its content."""
    [confirmation] = stack.notifier.messages(notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION)
    assert confirmation.recipient.email == "alice@example.com"
    variables = confirmation.variables
    assert variables["new_plan"].startswith("Business (")
    assert variables["old_plan"] and not variables["old_plan"].startswith("Business")
    assert "SSO and audit log" in variables["unlocks"]
    assert variables["effective_date"]
    return confirmation


async def _killed_after_stripe(stack: Stack, request: pb.ChangePlanRequest) -> None:
    """The plan change made in Stripe by a process that dies before the ledger's outcome."""

    def die(_: object) -> None:
        raise SimulatedCrash("killed between Stripe and the ledger")

    stack.service.ledger.after_stripe_call = die
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.billing.ChangePlan(request)
    stack.service.ledger.after_stripe_call = None
    assert stack.notifier.messages(notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION) == []


async def _outcome(stack: Stack, request: pb.ChangePlanRequest) -> tuple[str, str]:
    """The ledger's state of the request's operation, and its error reason."""
    async with stack.running.pool.acquire() as connection:
        operation = await operation_store.operation_by_key(
            connection, WORKSPACE, request.idempotency_key
        )
    assert operation is not None
    return operation.state, operation.error_reason


async def test_plan_change_confirmed_once_with_old_and_new_plan(stack: Stack) -> None:
    request = await _plan_change(stack, "plan")
    first = await stack.billing.ChangePlan(request)
    again = await stack.billing.ChangePlan(request)  # a retried "yes"
    assert again.operation.operation_id == first.operation.operation_id
    confirmation = _plan_change_confirmation(stack)
    assert first.operation.operation_id in confirmation.dedup_key
    assert await stack.service.confirmations.pending(WORKSPACE) == 0


async def test_a_plan_change_settled_by_reconciliation_is_confirmed_once(stack: Stack) -> None:
    # The chat does not retry a write that failed: only reconciliation finds the change
    # done, and the customer must be told all the same.
    request = await _plan_change(stack, "plan-killed")
    await _killed_after_stripe(stack, request)
    fresh, settings = stack.fresh_service()
    async with testing.running(fresh, settings):
        assert await fresh.ledger.reconcile(0) >= 1
        await fresh.ledger.reconcile(0)  # a second pass finds nothing more to confirm
        assert await fresh.confirmations.pending(WORKSPACE) == 1
        assert await fresh.confirmations.retry_due() == 1
        assert await fresh.confirmations.pending(WORKSPACE) == 0
    confirmation = _plan_change_confirmation(stack)

    # A late retry of the same "yes" answers the same operation and queues nothing again.
    again = await stack.billing.ChangePlan(request)
    assert again.operation.operation_id in confirmation.dedup_key
    assert await stack.service.confirmations.pending(WORKSPACE) == 0
    assert len(stack.notifier.requests) == 1


async def test_a_plan_change_a_stripe_event_shows_done_is_confirmed_once(stack: Stack) -> None:
    # Reconciliation settled the change as not performed (a later write replaced the
    # subscription's metadata before it looked), then the change's own event arrives: the
    # event is Stripe's word that it happened, and the customer is told.
    await stack.flush_webhooks()
    await stack.service.events.drain()
    request = await _plan_change(stack, "plan-late-event")
    await _killed_after_stripe(stack, request)
    await stack.backend.sdk.v1.subscriptions.update_async(
        request.subscription_id, {"metadata": {"askvault_operation_id": ""}}
    )
    fresh, settings = stack.fresh_service()
    async with testing.running(fresh, settings):
        await fresh.ledger.reconcile(0)
        assert await fresh.confirmations.pending(WORKSPACE) == 0
    assert await _outcome(stack, request) == (operation_store.FAILED, "NOT_PERFORMED")
    await stack.flush_webhooks()
    await stack.service.events.drain()
    assert await _outcome(stack, request) == (operation_store.SUCCEEDED, "")
    assert await stack.service.confirmations.pending(WORKSPACE) == 1
    assert await stack.service.confirmations.retry_due() == 1
    _plan_change_confirmation(stack)
    assert len(stack.notifier.requests) == 1


async def _schedule(stack: Stack, email: str) -> tuple[str, pb.CancelSubscriptionRequest]:
    assertion = await stack.assertion(email)
    sub_id = str(stack.demo["customers"][email]["subscription"])
    grant = await stack.grant(
        assertion,
        common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION,
        policy_pb2.ActionDetails(subscription_id=sub_id),
    )
    return assertion, pb.CancelSubscriptionRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        grant_id=grant.grant_id,
        subscription_id=sub_id,
        idempotency_key=key("cancel"),
    )


async def test_cancellation_scheduled_and_undone_confirmed_once_each(stack: Stack) -> None:
    assertion, request = await _schedule(stack, "erin@example.com")
    scheduled = await stack.billing.CancelSubscription(request)
    await stack.billing.CancelSubscription(request)  # retried
    [notice] = stack.notifier.messages(notifier_pb2.TEMPLATE_CANCELLATION_SCHEDULED)
    assert notice.recipient.email == "erin@example.com"
    assert notice.variables["cancel_at"] and notice.variables["plan_name"]
    undo = pb.UndoCancellationRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        operation_id=scheduled.operation.operation_id,
        idempotency_key=key("undo"),
    )
    assert (await stack.billing.UndoCancellation(undo)).undone
    await stack.billing.UndoCancellation(undo)
    [undone] = stack.notifier.messages(notifier_pb2.TEMPLATE_CANCELLATION_UNDONE)
    assert undone.recipient.email == "erin@example.com"
    assert len(stack.notifier.messages(notifier_pb2.TEMPLATE_CANCELLATION_SCHEDULED)) == 1


async def test_cancellation_that_ran_sends_offboarding_with_its_content(
    notifier_stack: Stack,
) -> None:
    stack = notifier_stack
    _, request = await _schedule(stack, "erin@example.com")
    await stack.billing.CancelSubscription(request)
    stack.clock.advance(timedelta(days=1))
    assert await stack.service.ledger.run_due_cancellations() == 1
    await stack.flush_webhooks()
    await stack.service.events.drain()
    assert stack.sink is not None
    emails = await stack.sink.store.wait_for(2, 10.0, to="erin@example.com")
    subjects = sorted(email.subject for email in emails)
    assert subjects[0] == "Your subscription has ended", subjects
    assert subjects[1].startswith("Your subscription will end on"), subjects
    [goodbye] = [email for email in emails if email.subject == "Your subscription has ended"]
    assert "Plan: " in goodbye.text and "Ended: " in goodbye.text


async def test_a_confirmation_waits_out_a_notifier_outage_and_arrives_once(
    gated_notifier_stack: Stack,
) -> None:
    stack = gated_notifier_stack
    assert stack.notifier_gate is not None and stack.sink is not None
    outbox = stack.service.confirmations
    # The notifier is down while the plan changes: the write succeeds all the same.
    alice = await stack.assertion("alice@example.com")
    sub_id = str(stack.demo["customers"]["alice@example.com"]["subscription"])
    business = stack.demo["products"]["business"]["prices"]["usd"]
    grant = await stack.grant(
        alice,
        common_pb2.BILLING_ACTION_CHANGE_PLAN,
        policy_pb2.ActionDetails(subscription_id=sub_id, target_price_id=business),
    )
    request = pb.ChangePlanRequest(
        workspace_id=WORKSPACE,
        identity_assertion=alice,
        grant_id=grant.grant_id,
        subscription_id=sub_id,
        target_price_id=business,
        idempotency_key=key("plan-outage"),
    )
    changed = await stack.billing.ChangePlan(request)
    assert changed.subscription.plan.price_id == business
    assert await outbox.pending(WORKSPACE) == 1
    assert await outbox.retry_due() == 0  # still down: kept for later
    assert await outbox.pending(WORKSPACE) == 1
    assert stack.sink.store.select(to="alice@example.com") == []

    # The notifier is back: the worker hands the confirmation over (gRPC may still be in
    # its reconnect backoff for a moment, so it tries until the notifier takes it).
    stack.notifier_gate.opened = True
    async with asyncio.timeout(30):
        while await outbox.retry_due() == 0:
            await asyncio.sleep(0.1)
    assert await outbox.pending(WORKSPACE) == 0
    [email] = await stack.sink.store.wait_for(1, 10.0, to="alice@example.com")
    assert "Business" in email.text, email.text

    # A retried "yes" replays the answer: the confirmation left the operation when it was
    # queued, so nothing is queued or sent again.
    again = await stack.billing.ChangePlan(request)
    assert again.operation.operation_id == changed.operation.operation_id
    assert await outbox.pending(WORKSPACE) == 0
    assert await outbox.retry_due() == 0
    assert len(stack.sink.store.select(to="alice@example.com")) == 1
