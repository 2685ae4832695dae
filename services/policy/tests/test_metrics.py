"""Policy's metrics, read from the OpenTelemetry meter after the real thing happened: an
audit entry forged without the MAC key is counted by the chainer and by VerifyAuditChain,
and escalations opened and decided are counted once each, replays left out."""

from __future__ import annotations

import asyncpg

from askvault.policy.v1 import policy_pb2 as pb
from runtime import testing

from .conftest import Policy, key

CHAIN_FAILURES = "askvault.policy.audit.chain_failures"
OPENED = "askvault.policy.escalations.opened"
DECIDED = "askvault.policy.escalations.decided"


async def _verify(policy: Policy) -> pb.VerifyAuditChainResponse:
    response: pb.VerifyAuditChainResponse = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    return response


async def test_a_forged_audit_entry_is_counted_as_a_chain_failure(policy: Policy) -> None:
    await policy.chain()
    with testing.captured_metrics() as captured:
        assert (await _verify(policy)).intact
        assert captured.value(CHAIN_FAILURES) == 0
        # Written with the service's own credentials but without the audit MAC key.
        dsn = policy.server._settings.database_url.get_secret_value()
        connection = await asyncpg.connect(dsn, server_settings={"search_path": "policy,public"})
        try:
            await connection.execute(
                "INSERT INTO audit_pending (workspace_id, entry_id, occurred_at, actor_kind,"
                " actor_id, kind, contact_id, stripe_customer_id, action, amount_minor,"
                " currency, outcome, subject_id, key_id, seal)"
                " VALUES ($1, 'ae_forged', now(), 'admin', 'admin-alice', 'bounds.applied', '',"
                " '', '', 0, '', 'APPLIED', 'bc_forged', 't1', repeat('0', 64))",
                policy.workspace_id,
            )
        finally:
            await connection.close()
        assert not (await _verify(policy)).intact
        assert captured.value(CHAIN_FAILURES, check="verify_chain") == 1
        assert captured.value(CHAIN_FAILURES, check="chainer") >= 1


async def test_escalations_opened_and_decided_are_counted_once(policy: Policy) -> None:
    with testing.captured_metrics() as captured:
        over_cap = policy.refund(60000)
        escalated = await policy.stub.Authorize(over_cap)
        assert escalated.decision == pb.DECISION_ESCALATE
        assert (await policy.stub.Authorize(over_cap)).escalation_id == escalated.escalation_id
        hand_off = pb.OpenEscalationRequest(
            workspace_id=policy.workspace_id, reason="VISITOR_ASKED", idempotency_key=key()
        )
        opened = await policy.stub.OpenEscalation(hand_off)
        await policy.stub.OpenEscalation(hand_off)
        assert captured.value(OPENED, action="refund") == 1
        assert captured.value(OPENED, action="none") == 1

        reject = pb.RejectEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=escalated.escalation_id,
            note="too much",
            idempotency_key=key(),
        )
        await policy.stub.RejectEscalation(reject, metadata=testing.admin_metadata())
        await policy.stub.RejectEscalation(reject, metadata=testing.admin_metadata())
        await policy.stub.ApproveEscalation(
            pb.ApproveEscalationRequest(
                workspace_id=policy.workspace_id,
                escalation_id=opened.escalation.escalation_id,
                idempotency_key=key(),
            ),
            metadata=testing.admin_metadata(),
        )
        assert captured.value(DECIDED, decision="rejected") == 1
        assert captured.value(DECIDED, decision="approved") == 1
