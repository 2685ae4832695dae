"""The confirmations of the gateway's writes: plan changed, cancellation scheduled and undone,
off-boarding once the subscription ended; each sent once per action, with its content."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.tests.conftest import WORKSPACE, Stack, key


async def test_plan_change_confirmed_once_with_old_and_new_plan(stack: Stack) -> None:
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
        idempotency_key=key("plan"),
    )
    first = await stack.billing.ChangePlan(request)
    again = await stack.billing.ChangePlan(request)  # a retried "yes"
    assert again.operation.operation_id == first.operation.operation_id
    [confirmation] = stack.notifier.messages(notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION)
    assert confirmation.recipient.email == "alice@example.com"
    variables = confirmation.variables
    assert variables["new_plan"].startswith("Business (")
    assert variables["old_plan"] and not variables["old_plan"].startswith("Business")
    assert "SSO and audit log" in variables["unlocks"]
    assert variables["effective_date"]
    assert first.operation.operation_id in confirmation.dedup_key


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

    # A retried "yes" records it again; the notifier's dedup key makes it the same message.
    again = await stack.billing.ChangePlan(request)
    assert again.operation.operation_id == changed.operation.operation_id
    assert await outbox.pending(WORKSPACE) == 0
    assert await outbox.retry_due() == 0
    assert len(stack.sink.store.select(to="alice@example.com")) == 1
