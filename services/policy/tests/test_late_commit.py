"""A late commit: the enforcement point released a grant (reconciliation settled its action
as not performed), then found the action performed after all (a Stripe event showed it done)
and commits the released grant; or policy's database was restored to before the grant's
redemption, the grant expired unredeemed, and the enforcement point commits it. The money
moved, so policy counts the reservation again, past the bound if so, audits it as its own
entry, answers a replay the same and counts it once; a commit of a grant policy never
reserved (unknown, or another workspace's) is refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from askvault.policy.v1 import policy_pb2 as pb
from policy import expiry
from runtime import testing

from .conftest import Policy, audit_outcomes, key, refused

LATE = "askvault.policy.grants.committed_late"


async def _redeemed(policy: Policy, request: pb.AuthorizeRequest) -> pb.Grant:
    response = await policy.stub.Authorize(request)
    assert response.decision == pb.DECISION_ALLOW, response
    grant = response.grant
    await policy.stub.Redeem(
        pb.RedeemRequest(
            workspace_id=policy.workspace_id,
            grant_id=grant.grant_id,
            action=grant.action,
            details=grant.details,
            idempotency_key=key("redeem"),
        )
    )
    return grant


async def _release(policy: Policy, grant: pb.Grant) -> None:
    await policy.stub.Release(
        pb.ReleaseRequest(
            workspace_id=policy.workspace_id,
            grant_id=grant.grant_id,
            reason="NOT_PERFORMED",
            idempotency_key=key("release"),
        )
    )


def _commit(
    policy: Policy, grant_id: str, idempotency_key: str = "", workspace_id: str = ""
) -> pb.CommitRequest:
    return pb.CommitRequest(
        workspace_id=workspace_id or policy.workspace_id,
        grant_id=grant_id,
        stripe_object_id="re_late",
        idempotency_key=idempotency_key or key("commit"),
    )


async def _chain_intact(policy: Policy) -> bool:
    await policy.chain()
    response = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    return bool(response.intact)


async def test_a_released_grant_committed_late_counts_again_and_is_audited(
    policy: Policy,
) -> None:
    grant = await _redeemed(policy, policy.refund(20000))
    await _release(policy, grant)
    assert (await policy.counter(), await policy.customer_counter()) == (0, 0)

    request = _commit(policy, grant.grant_id)
    with testing.captured_metrics() as captured:
        committed = await policy.stub.Commit(request)
        assert captured.value(LATE, over_bound="false") == 1
        # The gateway retries with the same key (a lost answer): the same answer, counted once.
        assert await policy.stub.Commit(request) == committed
        assert captured.value(LATE, over_bound="false") == 1
    assert committed.grant.state == pb.GRANT_STATE_COMMITTED
    assert (committed.committed_late, committed.over_bound) == (True, False)
    assert (await policy.counter(), await policy.customer_counter()) == (20000, 20000)
    assert await audit_outcomes(policy, grant.grant_id) == [
        ("decision", "ALLOW:WITHIN_BOUNDS"),
        ("grant.redeemed", "REDEEMED"),
        ("grant.released", "RELEASED"),
        ("grant.committed_late", "COMMITTED_LATE:WITHIN_BOUND (released: NOT_PERFORMED)"),
    ]
    assert await _chain_intact(policy)

    # Committed now: another commit or a release is refused and changes nothing.
    for other in (
        policy.stub.Commit(_commit(policy, grant.grant_id)),
        policy.stub.Release(
            pb.ReleaseRequest(
                workspace_id=policy.workspace_id,
                grant_id=grant.grant_id,
                reason="again",
                idempotency_key=key("release"),
            )
        ),
    ):
        assert await refused(other) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "GRANT_ALREADY_RESOLVED",
        )
    assert (await policy.counter(), await policy.customer_counter()) == (20000, 20000)
    kinds = [kind for kind, _ in await audit_outcomes(policy, grant.grant_id)]
    assert kinds.count("grant.committed_late") == 1
    assert await _chain_intact(policy)

    # What the late commit counted narrows what is left: $300 of the $500 cap remains.
    over = await policy.stub.Authorize(policy.refund(30001))
    assert over.decision == pb.DECISION_ESCALATE
    assert over.reason == pb.DECISION_REASON_REFUND_OVER_CAP


async def test_a_late_commit_past_the_bound_counts_it_and_records_that(policy: Policy) -> None:
    # Three plan changes per period. The first is released, so three more fit; then the
    # first turns out to have happened.
    first = await _redeemed(policy, policy.plan_change())
    await _release(policy, first)
    for _ in range(3):
        other = await _redeemed(policy, policy.plan_change())
        await policy.stub.Commit(_commit(policy, other.grant_id))
    assert await policy.customer_counter(counter="plan_changes") == 3

    with testing.captured_metrics() as captured:
        committed = await policy.stub.Commit(_commit(policy, first.grant_id))
        assert captured.value(LATE, over_bound="true") == 1
    assert (committed.committed_late, committed.over_bound) == (True, True)
    assert await policy.customer_counter(counter="plan_changes") == 4
    assert await policy.counter(counter="plan_changes") == 4
    assert (await audit_outcomes(policy, first.grant_id))[-1] == (
        "grant.committed_late",
        "COMMITTED_LATE:OVER_BOUND (released: NOT_PERFORMED)",
    )
    assert await _chain_intact(policy)
    denied = await policy.stub.Authorize(policy.plan_change())
    assert denied.decision == pb.DECISION_DENY
    assert denied.reason == pb.DECISION_REASON_PLAN_CHANGE_LIMIT


async def test_racing_late_commits_count_the_reservation_once(policy: Policy) -> None:
    grant = await _redeemed(policy, policy.refund(1500))
    await _release(policy, grant)
    same = _commit(policy, grant.grant_id)
    results = await asyncio.gather(
        *(policy.stub.Commit(same) for _ in range(4)),
        *(policy.stub.Commit(_commit(policy, grant.grant_id)) for _ in range(4)),
        return_exceptions=True,
    )
    answers = [r for r in results if isinstance(r, pb.CommitResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(answers) + len(refused) == 8
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    assert all(a.committed_late for a in answers)
    assert {testing.error_details(e)[1] for e in refused} <= {"GRANT_ALREADY_RESOLVED"}
    assert (await policy.counter(), await policy.customer_counter()) == (1500, 1500)
    kinds = [kind for kind, _ in await audit_outcomes(policy, grant.grant_id)]
    assert kinds.count("grant.committed_late") == 1
    assert "grant.committed" not in kinds
    assert await _chain_intact(policy)


@pytest.mark.parametrize("workspace_id", ["", "ws_other"], ids=["unknown_grant", "other_workspace"])
async def test_a_commit_of_a_grant_never_reserved_there_isrefused(
    policy: Policy, workspace_id: str
) -> None:
    # A released grant of this workspace, presented as another workspace's, or an id policy
    # never issued: nothing to count again.
    grant = await _redeemed(policy, policy.refund(1000))
    await _release(policy, grant)
    grant_id = grant.grant_id if workspace_id else "gr_never_issued"
    assert await refused(
        policy.stub.Commit(_commit(policy, grant_id, workspace_id=workspace_id))
    ) == (grpc.StatusCode.NOT_FOUND, "GRANT_INVALID")
    assert (await policy.counter(), await policy.customer_counter()) == (0, 0)
    if not workspace_id:
        assert await audit_outcomes(policy, grant_id) == [
            ("grant.commit_refused", "REFUSED:GRANT_INVALID")
        ]
    # The released grant itself is untouched.
    kinds = [kind for kind, _ in await audit_outcomes(policy, grant.grant_id)]
    assert kinds[-1] == "grant.released"


async def test_an_expired_grant_committed_after_a_restore_counts_again_once(
    policy: Policy,
) -> None:
    """Policy's database restored from a backup taken after the grant was issued and before
    it was redeemed: the restored grant is RESERVED, expires unredeemed, and the enforcement
    point, finding the refund done in Stripe, commits it. The money moved: counted late."""
    response = await policy.stub.Authorize(policy.refund(1000))
    grant = response.grant
    policy.clock.advance(timedelta(seconds=121))
    assert await expiry.sweep(policy.server.pool, policy.audit_keys, policy.clock(), 100) == 1
    assert (await policy.counter(), await policy.customer_counter()) == (0, 0)

    request = _commit(policy, grant.grant_id)
    with testing.captured_metrics() as captured:
        committed = await policy.stub.Commit(request)
        assert await policy.stub.Commit(request) == committed
        assert captured.value(LATE, over_bound="false") == 1
    assert committed.grant.state == pb.GRANT_STATE_COMMITTED
    assert (committed.committed_late, committed.over_bound) == (True, False)
    assert (await policy.counter(), await policy.customer_counter()) == (1000, 1000)
    assert await audit_outcomes(policy, grant.grant_id) == [
        ("decision", "ALLOW:WITHIN_BOUNDS"),
        ("grant.expired", "EXPIRED"),
        ("grant.committed_late", "COMMITTED_LATE:WITHIN_BOUND (expired)"),
    ]
    assert await _chain_intact(policy)


async def test_a_due_grant_committed_is_expired_then_committed_late_counted_once(
    policy: Policy,
) -> None:
    """The same before the expiry worker ran: the commit expires the due grant (giving its
    reservation back) and then commits it late (counting it again), so it counts once."""
    response = await policy.stub.Authorize(policy.refund(1000))
    grant = response.grant
    assert (await policy.counter(), await policy.customer_counter()) == (1000, 1000)
    policy.clock.advance(timedelta(seconds=121))

    committed = await policy.stub.Commit(_commit(policy, grant.grant_id))
    assert (committed.committed_late, committed.over_bound) == (True, False)
    assert (await policy.counter(), await policy.customer_counter()) == (1000, 1000)
    assert await audit_outcomes(policy, grant.grant_id) == [
        ("decision", "ALLOW:WITHIN_BOUNDS"),
        ("grant.expired", "EXPIRED"),
        ("grant.committed_late", "COMMITTED_LATE:WITHIN_BOUND (expired)"),
    ]
    # A release of the due grant is still refused as expired (nothing happened to count).
    other = await policy.stub.Authorize(policy.refund(500))
    policy.clock.advance(timedelta(seconds=121))
    assert await refused(
        policy.stub.Release(
            pb.ReleaseRequest(
                workspace_id=policy.workspace_id,
                grant_id=other.grant.grant_id,
                reason="NOT_PERFORMED",
                idempotency_key=key("release"),
            )
        )
    ) == (grpc.StatusCode.FAILED_PRECONDITION, "GRANT_EXPIRED")
    assert (await policy.counter(), await policy.customer_counter()) == (1000, 1000)
    assert await _chain_intact(policy)
