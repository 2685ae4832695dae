"""Escalations end in an outcome: the billing gateway (and only it) records EXECUTED or FAILED
on an approved escalation; a rejection keeps its note; the inbox lists the oldest first; the
audit log filters by customer and actor; an approval's grant outlives a retry."""

from __future__ import annotations

from datetime import timedelta

import grpc

from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from runtime import clients, testing, testing_keys
from tests.registry import SERVICES

from .conftest import Policy, key, refused


async def _escalated(policy: Policy) -> str:
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision == pb.DECISION_ESCALATE
    escalation_id: str = response.escalation_id
    return escalation_id


async def _approved(policy: Policy, admin: str = "admin-bob") -> pb.ApproveEscalationResponse:
    escalation_id = await _escalated(policy)
    approved: pb.ApproveEscalationResponse = await policy.stub.ApproveEscalation(
        pb.ApproveEscalationRequest(
            workspace_id=policy.workspace_id, escalation_id=escalation_id, idempotency_key=key()
        ),
        metadata=testing.admin_metadata(admin),
    )
    return approved


def _outcome(
    policy: Policy,
    escalation_id: str,
    state: pb.EscalationState.ValueType,
    *,
    stripe_object_id: str = "",
    failure_reason: str = "",
) -> pb.RecordEscalationOutcomeRequest:
    return pb.RecordEscalationOutcomeRequest(
        workspace_id=policy.workspace_id,
        escalation_id=escalation_id,
        state=state,
        stripe_object_id=stripe_object_id,
        failure_reason=failure_reason,
        idempotency_key=key(),
    )


async def test_an_approved_escalation_takes_one_outcome(policy: Policy) -> None:
    approved = await _approved(policy)
    escalation_id = approved.escalation.escalation_id
    # The approver's grant lives long enough for a retry after a crash: well past 120 s.
    lifetime = approved.grant.expires_at.ToDatetime() - approved.grant.created_at.ToDatetime()
    assert lifetime == timedelta(days=1)
    policy.clock.advance(timedelta(hours=2))
    redeemed = await policy.stub.Redeem(
        pb.RedeemRequest(
            workspace_id=policy.workspace_id,
            grant_id=approved.grant.grant_id,
            action=approved.grant.action,
            details=approved.grant.details,
            idempotency_key=key(),
        )
    )
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED

    executed = await policy.stub.RecordEscalationOutcome(
        _outcome(policy, escalation_id, pb.ESCALATION_STATE_EXECUTED, stripe_object_id="re_1")
    )
    escalation = executed.escalation
    assert escalation.state == pb.ESCALATION_STATE_EXECUTED
    assert escalation.stripe_object_id == "re_1"
    assert escalation.decided_by == "admin-bob"
    assert escalation.finished_at.ToDatetime() == policy.clock().replace(tzinfo=None)
    # The same outcome again, under any key: answered as recorded.
    replay = await policy.stub.RecordEscalationOutcome(
        _outcome(policy, escalation_id, pb.ESCALATION_STATE_EXECUTED, stripe_object_id="re_1")
    )
    assert replay.escalation == escalation
    # Another outcome: refused, nothing changes.
    assert await refused(
        policy.stub.RecordEscalationOutcome(
            _outcome(policy, escalation_id, pb.ESCALATION_STATE_FAILED, failure_reason="X")
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "OUTCOME_ALREADY_RECORDED")
    got = await policy.stub.GetEscalation(
        pb.GetEscalationRequest(workspace_id=policy.workspace_id, escalation_id=escalation_id)
    )
    assert got.escalation == escalation

    # The audit log names the approver for the outcome too; filters by actor and customer.
    await policy.chain()
    by_admin = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(workspace_id=policy.workspace_id, actor_id="admin-bob"),
        metadata=testing.admin_metadata(),
    )
    assert [e.kind for e in by_admin.events] == [
        "escalation.approved",
        "decision",
        "escalation.executed",
    ]
    assert by_admin.events[-1].outcome == "EXECUTED:re_1"
    by_customer = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(workspace_id=policy.workspace_id, stripe_customer_id="cus_x"),
        metadata=testing.admin_metadata(),
    )
    assert list(by_customer.events) == []


async def test_only_an_approved_escalation_takes_an_outcome(policy: Policy) -> None:
    open_id = await _escalated(policy)
    assert await refused(
        policy.stub.RecordEscalationOutcome(
            _outcome(policy, open_id, pb.ESCALATION_STATE_EXECUTED, stripe_object_id="re_1")
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "ESCALATION_NOT_APPROVED")
    approved = await _approved(policy)
    escalation_id = approved.escalation.escalation_id
    for bad in (
        _outcome(policy, escalation_id, pb.ESCALATION_STATE_OPEN),
        _outcome(policy, escalation_id, pb.ESCALATION_STATE_EXECUTED),
        _outcome(policy, escalation_id, pb.ESCALATION_STATE_FAILED),
    ):
        assert await refused(policy.stub.RecordEscalationOutcome(bad)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        )
    failed = await policy.stub.RecordEscalationOutcome(
        _outcome(
            policy, escalation_id, pb.ESCALATION_STATE_FAILED, failure_reason="ALREADY_REFUNDED"
        )
    )
    assert failed.escalation.state == pb.ESCALATION_STATE_FAILED
    assert failed.escalation.failure_reason == "ALREADY_REFUNDED"
    assert not failed.escalation.stripe_object_id


async def test_a_rejection_keeps_its_note_and_the_inbox_lists_the_oldest_first(
    policy: Policy,
) -> None:
    ids = []
    for _ in range(3):
        ids.append(await _escalated(policy))
        policy.clock.advance(timedelta(minutes=1))
    rejected = await policy.stub.RejectEscalation(
        pb.RejectEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=ids[1],
            note="The charge was for a month you used.",
            idempotency_key=key(),
        ),
        metadata=testing.admin_metadata(),
    )
    assert rejected.escalation.decision_note == "The charge was for a month you used."
    seen: list[str] = []
    token = ""
    while True:
        page = await policy.stub.ListEscalations(
            pb.ListEscalationsRequest(
                workspace_id=policy.workspace_id, oldest_first=True, page_size=2, page_token=token
            ),
            metadata=testing.admin_metadata(),
        )
        seen.extend(e.escalation_id for e in page.escalations)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    inbox = await policy.stub.ListEscalations(
        pb.ListEscalationsRequest(
            workspace_id=policy.workspace_id, state=pb.ESCALATION_STATE_OPEN, oldest_first=True
        ),
        metadata=testing.admin_metadata(),
    )
    assert [e.escalation_id for e in inbox.escalations] == [ids[0], ids[2]]
    newest = await policy.stub.ListEscalations(
        pb.ListEscalationsRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    assert [e.escalation_id for e in newest.escalations] == ids[::-1]


async def test_only_the_billing_gateway_records_an_outcome(database_url: str) -> None:
    entry = next(entry for entry in SERVICES if entry.name == "policy")
    service, settings = entry.build(database_url, service_public_keys=testing_keys.public_keys())
    request = pb.RecordEscalationOutcomeRequest(
        workspace_id="ws_a",
        escalation_id="esc_x",
        state=pb.ESCALATION_STATE_EXECUTED,
        stripe_object_id="re_1",
        idempotency_key="k1",
    )

    async def record_as(caller: str) -> tuple[grpc.StatusCode, str]:
        channel = clients.channel(running.address, testing_keys.outgoing(caller))
        try:
            return await refused(
                policy_pb2_grpc.PolicyServiceStub(channel).RecordEscalationOutcome(
                    request, timeout=5
                )
            )
        finally:
            await channel.close()

    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as plain,
    ):
        anonymous = await refused(
            policy_pb2_grpc.PolicyServiceStub(plain).RecordEscalationOutcome(request, timeout=5)
        )
        # An admin's own credential does not make one: the outcome is the gateway's to say.
        admin = await refused(
            policy_pb2_grpc.PolicyServiceStub(plain).RecordEscalationOutcome(
                request, metadata=testing.admin_metadata(), timeout=5
            )
        )
        edge = await record_as("edge")
        notifier = await record_as("notifier")
        billing = await record_as("billing_gateway")
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    assert admin == (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    assert edge == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    assert notifier == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    # Past the caller check, the escalation itself is what is looked at.
    assert billing == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
