"""Carrying out escalations in the gateway: a crash between Stripe and the ledger is finished
by a retry of the call (one refund, the outcome recorded, the customer told once); a plain
hand-off is approved and moves nothing; the webhook health figures."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.ledger import SimulatedCrash
from billing_gateway.tests.conftest import WORKSPACE, Stack, key, usd
from runtime import testing


async def _open(stack: Stack, email: str, **fields: object) -> policy_pb2.Escalation:
    """An escalation the edge opened for a verified visitor (with an action, or none)."""
    opened = await stack.policy.OpenEscalation(
        policy_pb2.OpenEscalationRequest(
            workspace_id=WORKSPACE,
            identity_assertion=await stack.assertion(email),
            reason="VISITOR_ASKED",
            idempotency_key=key("open"),
            **fields,  # type: ignore[arg-type]
        )
    )
    escalation: policy_pb2.Escalation = opened.escalation
    return escalation


async def _escalation(stack: Stack, escalation_id: str) -> policy_pb2.Escalation:
    got = await stack.policy.GetEscalation(
        policy_pb2.GetEscalationRequest(workspace_id=WORKSPACE, escalation_id=escalation_id)
    )
    escalation: policy_pb2.Escalation = got.escalation
    return escalation


def _carry_out(escalation_id: str) -> pb.CarryOutEscalationRequest:
    return pb.CarryOutEscalationRequest(
        workspace_id=WORKSPACE, escalation_id=escalation_id, idempotency_key=key("carry")
    )


async def test_a_crash_after_stripe_is_finished_by_a_retry_of_the_call(stack: Stack) -> None:
    email = "bob@example.com"
    charge = stack.demo["customers"][email]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(700))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    escalation = await _open(stack, email, action=common_pb2.BILLING_ACTION_REFUND, details=details)

    def die(_: object) -> None:
        raise SimulatedCrash("killed between Stripe and the ledger")

    stack.service.ledger.after_stripe_call = die
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.billing.CarryOutEscalation(
            _carry_out(escalation.escalation_id), metadata=testing.admin_metadata("admin-ann")
        )
    stack.service.ledger.after_stripe_call = None
    refunds = [r for r in account.all("refund") if r["charge"] == charge]
    assert len(refunds) == 1
    halfway = await _escalation(stack, escalation.escalation_id)
    assert halfway.state == policy_pb2.ESCALATION_STATE_APPROVED
    assert stack.notifier.messages(notifier_pb2.TEMPLATE_ESCALATION_APPROVED) == []

    # The retry (another key, another admin) finishes it: no second refund.
    done = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id), metadata=testing.admin_metadata("admin-cy")
    )
    assert done.outcome == pb.ESCALATION_OUTCOME_EXECUTED
    assert done.stripe_object_id == refunds[0]["id"]
    assert [r["id"] for r in account.all("refund") if r["charge"] == charge] == [refunds[0]["id"]]
    finished = await _escalation(stack, escalation.escalation_id)
    assert finished.state == policy_pb2.ESCALATION_STATE_EXECUTED
    assert finished.decided_by == "admin-ann"
    told = stack.notifier.messages(notifier_pb2.TEMPLATE_ESCALATION_APPROVED)
    assert len(told) == 1
    assert told[0].dedup_key == f"escalation:{escalation.escalation_id}:outcome"
    assert told[0].recipient.contact_id == escalation.contact_id
    assert told[0].recipient.email == email
    assert dict(told[0].variables) == {
        "escalation_id": escalation.escalation_id,
        "action_summary": "a refund of 7.00 USD",
        "outcome": "executed",
        "amount": "7.00 USD",
        "reference": refunds[0]["id"],
    }


async def test_a_crash_settled_by_reconciliation_is_answered_from_the_ledger(
    stack: Stack,
) -> None:
    email = "bob@example.com"
    charge = stack.demo["customers"][email]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(300))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    escalation = await _open(stack, email, action=common_pb2.BILLING_ACTION_REFUND, details=details)

    def die(_: object) -> None:
        raise SimulatedCrash("killed between Stripe and the ledger")

    stack.service.ledger.after_stripe_call = die
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.billing.CarryOutEscalation(
            _carry_out(escalation.escalation_id), metadata=testing.admin_metadata()
        )
    stack.service.ledger.after_stripe_call = None
    # The ledger's own recovery settles the operation (a restarted replica) ...
    fresh, settings = stack.fresh_service()
    async with testing.running(fresh, settings):
        assert await fresh.ledger.reconcile(0) >= 1
    refunds = [r for r in account.all("refund") if r["charge"] == charge]
    assert len(refunds) == 1
    # ... and the retry of the call records and tells what the ledger holds.
    done = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id), metadata=testing.admin_metadata()
    )
    assert (done.outcome, done.stripe_object_id) == (
        pb.ESCALATION_OUTCOME_EXECUTED,
        refunds[0]["id"],
    )
    assert len([r for r in account.all("refund") if r["charge"] == charge]) == 1
    finished = await _escalation(stack, escalation.escalation_id)
    assert finished.state == policy_pb2.ESCALATION_STATE_EXECUTED
    assert len(stack.notifier.messages(notifier_pb2.TEMPLATE_ESCALATION_APPROVED)) == 1


async def test_two_admins_at_once_refund_once_and_agree_on_the_outcome(stack: Stack) -> None:
    email = "bob@example.com"
    charge = stack.demo["customers"][email]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(500))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    escalation = await _open(stack, email, action=common_pb2.BILLING_ACTION_REFUND, details=details)
    answers = await asyncio.gather(
        *(
            stack.billing.CarryOutEscalation(
                _carry_out(escalation.escalation_id), metadata=testing.admin_metadata(admin)
            )
            for admin in ("admin-ann", "admin-cy", "admin-dee")
        )
    )
    assert {answer.outcome for answer in answers} == {pb.ESCALATION_OUTCOME_EXECUTED}
    assert len({answer.stripe_object_id for answer in answers}) == 1
    assert len([r for r in account.all("refund") if r["charge"] == charge]) == 1
    assert len(stack.notifier.messages(notifier_pb2.TEMPLATE_ESCALATION_APPROVED)) == 1


async def test_a_plain_hand_off_is_approved_and_moves_nothing(stack: Stack) -> None:
    escalation = await _open(stack, "alice@example.com")
    answer = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id), metadata=testing.admin_metadata()
    )
    assert answer.outcome == pb.ESCALATION_OUTCOME_NO_ACTION
    assert not answer.operation_id
    after = await _escalation(stack, escalation.escalation_id)
    assert after.state == policy_pb2.ESCALATION_STATE_APPROVED
    assert not after.grant_id
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    assert list(account.all("refund")) == []


async def test_webhook_health_counts_events_and_shows_the_last_error(stack: Stack) -> None:
    bob = await stack.assertion("bob@example.com")
    await stack.billing.GetSubscription(
        pb.GetSubscriptionRequest(workspace_id=WORKSPACE, identity_assertion=bob)
    )
    # A write that makes Stripe send events, delivered to the gateway.
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(100))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    await stack.billing.RefundCharge(
        pb.RefundChargeRequest(
            workspace_id=WORKSPACE,
            identity_assertion=bob,
            grant_id=grant.grant_id,
            charge_id=charge,
            amount=usd(100),
            idempotency_key=key(),
        )
    )
    await stack.flush_webhooks()
    check = pb.CheckWebhookSetupRequest(workspace_id=WORKSPACE)
    healthy = await stack.billing.CheckWebhookSetup(check, metadata=testing.admin_metadata())
    assert healthy.events_received_24h >= 1
    assert healthy.last_error == ""
    assert not healthy.HasField("last_error_at")

    async with stack.running.pool.acquire() as connection:
        await connection.execute(
            "UPDATE stripe_events SET last_error = 'identity did not answer',"
            " last_error_at = now(), processed_at = NULL"
            " WHERE workspace_id = $1 AND event_id ="
            " (SELECT event_id FROM stripe_events WHERE workspace_id = $1 LIMIT 1)",
            WORKSPACE,
        )
    failing = await stack.billing.CheckWebhookSetup(check, metadata=testing.admin_metadata())
    assert failing.last_error == "identity did not answer"
    assert failing.HasField("last_error_at")
    assert failing.events_received_24h == healthy.events_received_24h
