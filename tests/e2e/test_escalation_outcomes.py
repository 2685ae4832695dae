"""Escalations end in an outcome: an admin's CarryOutEscalation refunds exactly the escalated
charge and amount once, whatever the keys; DeclineEscalation records the reason; an approval
that can no longer apply moves nothing; either way the customer is told, once. Only an admin
of the workspace may decide."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.common.v1 import common_pb2
from askvault.notifier.v1 import notifier_pb2 as npb
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2 as ppb
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack
from tests.e2e.test_policy_flows import _set_bounds

APPROVER = "admin-approver"


def _admin(subject: str = APPROVER) -> tuple[tuple[str, str], ...]:
    return testing.admin_metadata(subject)


async def _escalated_refund(stack: Stack, conversation: str) -> ppb.Escalation:
    """Alice asks for a refund above the cap: policy escalates it."""
    await _set_bounds(
        stack,
        f"cap-{conversation}",
        refund_caps=[common_pb2.Money(amount_minor=2000, currency="usd")],
    )
    answer = await stack.turn("alice", "please refund my last charge", conversation=conversation)
    assert answer["escalated"] is True, answer
    return await _escalation(stack, answer["escalation_id"])


async def _escalation(stack: Stack, escalation_id: str) -> ppb.Escalation:
    got = await stack.policy.GetEscalation(
        ppb.GetEscalationRequest(workspace_id=WORKSPACE, escalation_id=escalation_id), timeout=5
    )
    escalation: ppb.Escalation = got.escalation
    return escalation


def _carry_out(escalation_id: str, key: str) -> bpb.CarryOutEscalationRequest:
    return bpb.CarryOutEscalationRequest(
        workspace_id=WORKSPACE, escalation_id=escalation_id, idempotency_key=key
    )


@pytest.fixture
async def notifier(stack: Stack) -> AsyncIterator[notifier_pb2_grpc.NotifierServiceAsyncStub]:
    async with grpc.aio.insecure_channel(stack.notifier_address) as channel:
        yield notifier_pb2_grpc.NotifierServiceStub(channel)


async def _told(
    notifier: notifier_pb2_grpc.NotifierServiceAsyncStub,
    contact_id: str,
    template: npb.Template.ValueType,
) -> list[npb.Message]:
    listed = await notifier.ListMessages(
        npb.ListMessagesRequest(workspace_id=WORKSPACE, contact_id=contact_id, page_size=500),
        timeout=5,
    )
    return [m for m in listed.messages if m.template == template]


async def test_an_approved_refund_runs_once_and_the_customer_is_told(
    stack: Stack, notifier: notifier_pb2_grpc.NotifierServiceAsyncStub
) -> None:
    escalation = await _escalated_refund(stack, "approve")
    assert escalation.state == ppb.ESCALATION_STATE_OPEN
    charge_id = escalation.details.charge_id

    first = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id, "console-1"), metadata=_admin(), timeout=30
    )
    assert first.outcome == bpb.ESCALATION_OUTCOME_EXECUTED, first
    assert first.stripe_object_id.startswith("re_")
    assert first.operation_id and first.notice_message_id
    # Another key (the CLI after the console, a second click): the recorded outcome, no money.
    second = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id, "cli-2"), metadata=_admin("admin-other"), timeout=30
    )
    assert second == first

    refunds = await stack.refunds()
    assert [(r["charge"], r["amount"], r["currency"]) for r in refunds] == [
        (charge_id, 4900, "usd")
    ]
    assert refunds[0]["id"] == first.stripe_object_id

    done = await _escalation(stack, escalation.escalation_id)
    assert done.state == ppb.ESCALATION_STATE_EXECUTED
    assert done.stripe_object_id == first.stripe_object_id
    assert done.decided_by == APPROVER
    assert done.HasField("finished_at")

    audit = await stack.policy.ListAuditEvents(
        ppb.ListAuditEventsRequest(workspace_id=WORKSPACE, actor_id=APPROVER),
        metadata=_admin(),
        timeout=5,
    )
    kinds = [(e.kind, e.subject_id) for e in audit.events]
    assert ("escalation.approved", escalation.escalation_id) in kinds
    assert ("escalation.executed", escalation.escalation_id) in kinds
    assert {e.actor.id for e in audit.events} == {APPROVER}
    by_customer = await stack.policy.ListAuditEvents(
        ppb.ListAuditEventsRequest(
            workspace_id=WORKSPACE, stripe_customer_id=escalation.stripe_customer_id
        ),
        metadata=_admin(),
        timeout=5,
    )
    assert by_customer.events
    assert {e.stripe_customer_id for e in by_customer.events} == {escalation.stripe_customer_id}
    assert "grant.committed" in {e.kind for e in by_customer.events}

    told = await _told(notifier, escalation.contact_id, npb.TEMPLATE_ESCALATION_APPROVED)
    assert [m.message_id for m in told] == [first.notice_message_id]
    assert told[0].dedup_key == f"escalation:{escalation.escalation_id}:outcome"


async def test_a_declined_escalation_keeps_the_reason_and_tells_the_customer(
    stack: Stack, notifier: notifier_pb2_grpc.NotifierServiceAsyncStub
) -> None:
    escalation = await _escalated_refund(stack, "decline")
    reason = "This charge is for a plan you used all month."
    declined = await stack.billing.DeclineEscalation(
        bpb.DeclineEscalationRequest(
            workspace_id=WORKSPACE,
            escalation_id=escalation.escalation_id,
            reason=reason,
            idempotency_key="decline-1",
        ),
        metadata=_admin(),
        timeout=30,
    )
    assert declined.outcome == bpb.ESCALATION_OUTCOME_DECLINED
    assert declined.notice_message_id
    again = await stack.billing.DeclineEscalation(
        bpb.DeclineEscalationRequest(
            workspace_id=WORKSPACE,
            escalation_id=escalation.escalation_id,
            reason=reason,
            idempotency_key="decline-2",
        ),
        metadata=_admin(),
        timeout=30,
    )
    assert again == declined

    done = await _escalation(stack, escalation.escalation_id)
    assert done.state == ppb.ESCALATION_STATE_REJECTED
    assert done.decision_note == reason
    assert done.decided_by == APPROVER
    told = await _told(notifier, escalation.contact_id, npb.TEMPLATE_ESCALATION_DECLINED)
    assert [m.message_id for m in told] == [declined.notice_message_id]

    # Declined stays declined: carrying it out is refused and moves nothing.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stack.billing.CarryOutEscalation(
            _carry_out(escalation.escalation_id, "late"), metadata=_admin(), timeout=30
        )
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ESCALATION_DECLINED",
    )
    assert await stack.refunds() == []


async def test_an_approval_that_no_longer_applies_moves_nothing_and_says_so(
    stack: Stack, notifier: notifier_pb2_grpc.NotifierServiceAsyncStub
) -> None:
    escalation = await _escalated_refund(stack, "stale")
    # The charge is refunded another way (the Stripe dashboard) before the admin decides.
    await stack.stripe.v1.refunds.create_async({"charge": escalation.details.charge_id})

    answer = await stack.billing.CarryOutEscalation(
        _carry_out(escalation.escalation_id, "stale-1"), metadata=_admin(), timeout=30
    )
    assert answer.outcome == bpb.ESCALATION_OUTCOME_FAILED, answer
    assert answer.failure_reason == "ALREADY_REFUNDED"
    assert not answer.stripe_object_id
    assert len(await stack.refunds()) == 1  # the dashboard's, no second one

    done = await _escalation(stack, escalation.escalation_id)
    assert done.state == ppb.ESCALATION_STATE_FAILED
    assert done.failure_reason == "ALREADY_REFUNDED"
    grant_events = await stack.policy.ListAuditEvents(
        ppb.ListAuditEventsRequest(
            workspace_id=WORKSPACE, stripe_customer_id=escalation.stripe_customer_id
        ),
        metadata=_admin(),
        timeout=5,
    )
    released = [e for e in grant_events.events if e.kind == "grant.released"]
    assert [e.subject_id for e in released] == [done.grant_id]
    told = await _told(notifier, escalation.contact_id, npb.TEMPLATE_ESCALATION_APPROVED)
    assert [m.message_id for m in told] == [answer.notice_message_id]


async def test_only_an_admin_of_the_workspace_decides(stack: Stack) -> None:
    escalation = await _escalated_refund(stack, "refused")
    other_workspace = testing.TEST_ADMIN_PROVIDER.issue("admin-elsewhere", workspaces=["ws_other"])
    not_admin = testing.TEST_ADMIN_PROVIDER.issue("someone", roles=["viewer"])
    callers = {
        "nobody": ((), grpc.StatusCode.UNAUTHENTICATED),
        "visitor": (
            (("authorization", "Bearer not-a-jwt"),),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "not admin": (
            (("authorization", f"Bearer {not_admin}"),),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "other workspace": (
            (("authorization", f"Bearer {other_workspace}"),),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    for name, (metadata, code) in callers.items():
        with pytest.raises(grpc.aio.AioRpcError) as carried:
            await stack.billing.CarryOutEscalation(
                _carry_out(escalation.escalation_id, f"k-{name}"), metadata=metadata, timeout=30
            )
        assert testing.error_details(carried.value)[:2] == (code, "ADMIN_REQUIRED"), name
        with pytest.raises(grpc.aio.AioRpcError) as declined:
            await stack.billing.DeclineEscalation(
                bpb.DeclineEscalationRequest(
                    workspace_id=WORKSPACE,
                    escalation_id=escalation.escalation_id,
                    reason="no",
                    idempotency_key=f"d-{name}",
                ),
                metadata=metadata,
                timeout=30,
            )
        assert testing.error_details(declined.value)[:2] == (code, "ADMIN_REQUIRED"), name
    assert (await _escalation(stack, escalation.escalation_id)).state == ppb.ESCALATION_STATE_OPEN
    assert await stack.refunds() == []
