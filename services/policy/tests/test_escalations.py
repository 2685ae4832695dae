"""Escalations: opened by decisions or by hand, approved into a grant once, or rejected."""

from __future__ import annotations

import grpc
import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from runtime import testing

from .conftest import Policy, key, usd


async def _over_cap(policy: Policy) -> str:
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision == pb.DECISION_ESCALATE
    assert response.reason == pb.DECISION_REASON_REFUND_OVER_CAP
    escalation_id: str = response.escalation_id
    return escalation_id


def _approve(
    policy: Policy, escalation_id: str, idempotency_key: str
) -> pb.ApproveEscalationRequest:
    return pb.ApproveEscalationRequest(
        workspace_id=policy.workspace_id,
        escalation_id=escalation_id,
        idempotency_key=idempotency_key,
    )


async def test_approval_yields_a_grant_for_exactly_the_escalated_refund(policy: Policy) -> None:
    escalation_id = await _over_cap(policy)
    request = _approve(policy, escalation_id, key())
    approved = await policy.stub.ApproveEscalation(
        request, metadata=testing.admin_metadata("admin-bob")
    )
    assert approved.escalation.state == pb.ESCALATION_STATE_APPROVED
    assert approved.escalation.decided_by == "admin-bob"
    assert approved.escalation.grant_id == approved.grant.grant_id
    assert approved.grant.details.amount == usd(60000)
    assert approved.grant.details.stripe_customer_id == "cus_alice"
    # Past the cap because an admin approved; the visitor has nothing left this month.
    assert await policy.counter() == 60000
    follow_up = await policy.stub.Authorize(policy.refund(100))
    assert follow_up.reason == pb.DECISION_REASON_REFUND_OVER_CAP
    assert follow_up.usage.remaining_amount == usd(0)

    # Same key: same result. Another key: not pending any more.
    again = await policy.stub.ApproveEscalation(
        request, metadata=testing.admin_metadata("admin-bob")
    )
    assert again == approved
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.ApproveEscalation(
            _approve(policy, escalation_id, key()), metadata=testing.admin_metadata("admin-bob")
        )
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_PENDING",
    )
    assert await policy.counter() == 60000

    # The grant resolves once, like any other.
    committed = await policy.stub.Commit(
        pb.CommitRequest(
            workspace_id=policy.workspace_id,
            grant_id=approved.grant.grant_id,
            stripe_object_id="re_9",
            idempotency_key=key(),
        )
    )
    assert committed.grant.state == pb.GRANT_STATE_COMMITTED


async def test_rejection_closes_the_escalation(policy: Policy) -> None:
    escalation_id = await _over_cap(policy)
    rejected = await policy.stub.RejectEscalation(
        pb.RejectEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=escalation_id,
            note="too much",
            idempotency_key=key(),
        ),
        metadata=testing.admin_metadata(),
    )
    assert rejected.escalation.state == pb.ESCALATION_STATE_REJECTED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.ApproveEscalation(
            _approve(policy, escalation_id, key()), metadata=testing.admin_metadata()
        )
    assert testing.error_details(raised.value)[1] == "NOT_PENDING"
    assert await policy.counter() == 0


async def test_anonymous_hand_off_is_opened_and_approved_without_a_grant(policy: Policy) -> None:
    request = pb.OpenEscalationRequest(
        workspace_id=policy.workspace_id,
        reason="VISITOR_ASKED",
        context=pb.EscalationContext(conversation_id="conv_7", note="wants a human"),
        idempotency_key=key(),
    )
    opened = await policy.stub.OpenEscalation(request)
    assert opened == await policy.stub.OpenEscalation(request)
    escalation = opened.escalation
    assert (escalation.contact_id, escalation.state) == ("", pb.ESCALATION_STATE_OPEN)
    approved = await policy.stub.ApproveEscalation(
        _approve(policy, escalation.escalation_id, key()), metadata=testing.admin_metadata()
    )
    assert approved.escalation.state == pb.ESCALATION_STATE_APPROVED
    assert not approved.HasField("grant")


async def test_verified_hand_off_carries_the_visitor_and_a_forged_one_is_refused(
    policy: Policy,
) -> None:
    request = pb.OpenEscalationRequest(
        workspace_id=policy.workspace_id,
        identity_assertion=policy.assertion(),
        action=common_pb2.BILLING_ACTION_CHANGE_PLAN,
        details=pb.ActionDetails(subscription_id="sub_1", target_price_id="price_x"),
        reason="STRIPE_UNAVAILABLE",
        idempotency_key=key(),
    )
    opened = await policy.stub.OpenEscalation(request)
    assert opened.escalation.contact_id == "ct_alice"
    assert opened.escalation.details.stripe_customer_id == "cus_alice"
    # A retry after a lost answer, with a freshly issued assertion of the same visitor: the
    # same escalation, not a second one nor a mismatch; another visitor's is a mismatch.
    request.identity_assertion = policy.assertion()
    assert await policy.stub.OpenEscalation(request) == opened
    request.identity_assertion = policy.assertion("ct_mallory", "cus_mallory")
    with pytest.raises(grpc.aio.AioRpcError) as mismatch:
        await policy.stub.OpenEscalation(request)
    assert testing.error_details(mismatch.value)[1] == "IDEMPOTENCY_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.OpenEscalation(
            pb.OpenEscalationRequest(
                workspace_id=policy.workspace_id,
                identity_assertion="forged",
                reason="VISITOR_ASKED",
                idempotency_key=key(),
            )
        )
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.UNAUTHENTICATED,
        "ASSERTION_INVALID",
    )


async def test_listing_needs_an_admin_and_pages_newest_first(policy: Policy) -> None:
    ids = [await _over_cap(policy) for _ in range(3)]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.ListEscalations(
            pb.ListEscalationsRequest(workspace_id=policy.workspace_id)
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    seen: list[str] = []
    token = ""
    while True:
        page = await policy.stub.ListEscalations(
            pb.ListEscalationsRequest(
                workspace_id=policy.workspace_id,
                state=pb.ESCALATION_STATE_OPEN,
                page_size=2,
                page_token=token,
            ),
            metadata=testing.admin_metadata(),
        )
        seen.extend(e.escalation_id for e in page.escalations)
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 3
