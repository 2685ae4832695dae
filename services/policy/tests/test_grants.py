"""Grants: exact redemption, resolving exactly once, expiry by the worker and lazily, and a
commit racing the expiry."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, timedelta

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import expiry
from policy.service import PolicyService
from runtime import testing

from .conftest import KEY_ID, Policy, TestClock, audit_outcomes, key, policy_settings, refused, usd


async def _grant(
    policy: Policy, amount_minor: int = 1000, contact_id: str = "ct_alice"
) -> pb.Grant:
    response = await policy.stub.Authorize(policy.refund(amount_minor, contact_id=contact_id))
    assert response.decision == pb.DECISION_ALLOW
    grant: pb.Grant = response.grant
    return grant


def _redeem(policy: Policy, grant: pb.Grant, **changes: object) -> pb.RedeemRequest:
    request = pb.RedeemRequest(
        workspace_id=policy.workspace_id,
        grant_id=grant.grant_id,
        action=grant.action,
        details=grant.details,
        idempotency_key=key("redeem"),
    )
    for name, value in changes.items():
        if name == "amount":
            request.details.amount.CopyFrom(value)  # type: ignore[arg-type]
        elif name == "stripe_customer_id":
            request.details.stripe_customer_id = str(value)
        else:
            setattr(request, name, value)
    return request


def _commit(
    policy: Policy, grant: pb.Grant, idempotency_key: str | None = None
) -> pb.CommitRequest:
    return pb.CommitRequest(
        workspace_id=policy.workspace_id,
        grant_id=grant.grant_id,
        stripe_object_id="re_1",
        idempotency_key=idempotency_key or key("commit"),
    )


def _release(
    policy: Policy, grant: pb.Grant, idempotency_key: str | None = None
) -> pb.ReleaseRequest:
    return pb.ReleaseRequest(
        workspace_id=policy.workspace_id,
        grant_id=grant.grant_id,
        reason="card_declined",
        idempotency_key=idempotency_key or key("release"),
    )


async def _audit_kinds(policy: Policy, subject_id: str) -> list[str]:
    await policy.chain()
    connection = await asyncpg.connect(policy.database_url)
    try:
        rows = await connection.fetch(
            "SELECT kind FROM policy.audit_events WHERE workspace_id = $1 AND subject_id = $2"
            " ORDER BY sequence",
            policy.workspace_id,
            subject_id,
        )
    finally:
        await connection.close()
    return [row["kind"] for row in rows]


async def test_redeem_with_exact_parameters_marks_the_grant_in_use(policy: Policy) -> None:
    grant = await _grant(policy)
    request = _redeem(policy, grant)
    redeemed = await policy.stub.Redeem(request)
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED
    # The same operation (same key) redeems again without error.
    assert await policy.stub.Redeem(request) == redeemed
    # Any other operation finds it in use.
    assert await refused(policy.stub.Redeem(_redeem(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_ALREADY_REDEEMED",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": usd(2000)},
        {"amount": common_pb2.Money(amount_minor=1000, currency="eur")},
        {"stripe_customer_id": "cus_mallory"},
        {"action": common_pb2.BILLING_ACTION_CHANGE_PLAN},
    ],
)
async def test_redeem_with_other_parameters_isrefused(
    policy: Policy, changes: dict[str, object]
) -> None:
    grant = await _grant(policy, 1000)
    assert await refused(policy.stub.Redeem(_redeem(policy, grant, **changes))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_INVALID",
    )
    # The refusal is audited (the refused call's own transaction rolled back).
    assert ("grant.redeem_refused", "REFUSED:GRANT_INVALID") in await audit_outcomes(
        policy, grant.grant_id
    )
    # Still redeemable with the right parameters.
    redeemed = await policy.stub.Redeem(_redeem(policy, grant))
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED


@pytest.mark.parametrize("shift", [timedelta(days=30), timedelta(seconds=1), timedelta(seconds=-1)])
async def test_redeem_with_another_charge_time_is_refused_and_audited(
    policy: Policy, shift: timedelta
) -> None:
    # The grant was issued for the charge time the edge supplied (a recent one); the
    # enforcement point read another one from Stripe.
    grant = await _grant(policy, 1000)
    request = _redeem(policy, grant)
    read_from_stripe = grant.details.charge_created_at.ToDatetime(UTC) - shift
    request.details.charge_created_at.FromDatetime(read_from_stripe)
    assert await refused(policy.stub.Redeem(request)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_DETAILS_MISMATCH",
    )
    assert await audit_outcomes(policy, grant.grant_id) == [
        ("decision", "ALLOW:WITHIN_BOUNDS"),
        ("grant.redeem_refused", "REFUSED:GRANT_DETAILS_MISMATCH"),
    ]
    # The grant stays unredeemed and reserved.
    assert await policy.counter() == 1000
    redeemed = await policy.stub.Redeem(_redeem(policy, grant))
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED


async def test_redeem_with_no_charge_time_isrefused(policy: Policy) -> None:
    grant = await _grant(policy, 1000)
    request = _redeem(policy, grant)
    request.details.ClearField("charge_created_at")
    assert await refused(policy.stub.Redeem(request)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_DETAILS_MISMATCH",
    )


async def test_redeem_of_a_charge_gone_out_of_the_window_is_refused_and_audited(
    policy: Policy,
) -> None:
    # Inside the 14-day window when the grant was issued, outside it a minute later.
    response = await policy.stub.Authorize(
        policy.refund(1000, charge_age=timedelta(days=14, seconds=-30))
    )
    assert response.decision == pb.DECISION_ALLOW
    grant = response.grant
    policy.clock.advance(timedelta(minutes=1))
    assert await refused(policy.stub.Redeem(_redeem(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "REFUND_OUTSIDE_WINDOW",
    )
    assert ("grant.redeem_refused", "REFUSED:REFUND_OUTSIDE_WINDOW") in await audit_outcomes(
        policy, grant.grant_id
    )


async def test_a_grant_a_human_approved_outside_the_window_is_redeemable(
    policy: Policy,
) -> None:
    escalated = await policy.stub.Authorize(policy.refund(1000, charge_age=timedelta(days=20)))
    assert escalated.decision == pb.DECISION_ESCALATE
    approved = await policy.stub.ApproveEscalation(
        pb.ApproveEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=escalated.escalation_id,
            idempotency_key=key("approve"),
        ),
        metadata=testing.admin_metadata(),
    )
    redeemed = await policy.stub.Redeem(_redeem(policy, approved.grant))
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED


async def test_refused_commit_and_release_are_audited(policy: Policy) -> None:
    grant = await _grant(policy, 1000)
    await policy.stub.Commit(_commit(policy, grant))
    assert await refused(policy.stub.Commit(_commit(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_ALREADY_RESOLVED",
    )
    assert await refused(policy.stub.Release(_release(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_ALREADY_RESOLVED",
    )
    assert await audit_outcomes(policy, grant.grant_id) == [
        ("decision", "ALLOW:WITHIN_BOUNDS"),
        ("grant.committed", "COMMITTED"),
        ("grant.commit_refused", "REFUSED:GRANT_ALREADY_RESOLVED"),
        ("grant.release_refused", "REFUSED:GRANT_ALREADY_RESOLVED"),
    ]
    unknown = pb.Grant(grant_id="gr_nope", action=common_pb2.BILLING_ACTION_REFUND)
    assert await refused(policy.stub.Release(_release(policy, unknown))) == (
        grpc.StatusCode.NOT_FOUND,
        "GRANT_INVALID",
    )
    assert await audit_outcomes(policy, "gr_nope") == [
        ("grant.release_refused", "REFUSED:GRANT_INVALID")
    ]


async def test_unknown_grant_is_not_found(policy: Policy) -> None:
    grant = pb.Grant(grant_id="gr_nope", action=common_pb2.BILLING_ACTION_REFUND)
    assert await refused(policy.stub.Redeem(_redeem(policy, grant))) == (
        grpc.StatusCode.NOT_FOUND,
        "GRANT_INVALID",
    )


async def test_commit_resolves_exactly_once(policy: Policy) -> None:
    grant = await _grant(policy, 1500)
    await policy.stub.Redeem(_redeem(policy, grant))
    request = _commit(policy, grant)
    committed = await asyncio.gather(*(policy.stub.Commit(request) for _ in range(5)))
    assert all(c == committed[0] for c in committed)
    assert committed[0].grant.state == pb.GRANT_STATE_COMMITTED
    for other in (
        policy.stub.Commit(_commit(policy, grant)),
        policy.stub.Release(_release(policy, grant)),
    ):
        assert await refused(other) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "GRANT_ALREADY_RESOLVED",
        )
    assert await policy.counter() == 1500
    assert (await _audit_kinds(policy, grant.grant_id)).count("grant.committed") == 1


async def test_release_frees_the_reservation_exactly_once(policy: Policy) -> None:
    grant = await _grant(policy, 2500)
    await policy.stub.Redeem(_redeem(policy, grant))
    assert await policy.counter() == 2500
    request = _release(policy, grant)
    released = await asyncio.gather(*(policy.stub.Release(request) for _ in range(5)))
    assert all(r.grant.state == pb.GRANT_STATE_RELEASED for r in released)
    assert await policy.counter() == 0
    assert await policy.customer_counter() == 0
    # Another release is refused (a commit of it is a late commit: test_late_commit.py).
    assert await refused(policy.stub.Release(_release(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_ALREADY_RESOLVED",
    )
    assert await policy.counter() == 0
    assert (await _audit_kinds(policy, grant.grant_id)).count("grant.released") == 1


async def test_worker_expires_an_unredeemed_grant_exactly_once(policy: Policy) -> None:
    grant = await _grant(policy, 3000)
    pool = policy.server.pool
    assert await expiry.sweep(pool, policy.audit_keys, policy.clock(), 100) == 0
    policy.clock.advance(timedelta(seconds=120))
    assert await expiry.sweep(pool, policy.audit_keys, policy.clock(), 100) == 1
    assert await expiry.sweep(pool, policy.audit_keys, policy.clock(), 100) == 0
    assert await policy.counter() == 0
    assert await policy.customer_counter() == 0
    assert (await _audit_kinds(policy, grant.grant_id)).count("grant.expired") == 1
    assert await refused(policy.stub.Redeem(_redeem(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_EXPIRED",
    )
    assert await refused(policy.stub.Release(_release(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_EXPIRED",
    )
    # (A commit of it is a late commit that counts it again: test_late_commit.py.)


async def test_a_due_grant_touched_before_the_worker_is_expired_lazily(policy: Policy) -> None:
    grant = await _grant(policy, 3000)
    policy.clock.advance(timedelta(seconds=121))
    assert await refused(policy.stub.Release(_release(policy, grant))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_EXPIRED",
    )
    assert await policy.counter() == 0
    assert await expiry.sweep(policy.server.pool, policy.audit_keys, policy.clock(), 100) == 0
    assert (await _audit_kinds(policy, grant.grant_id)).count("grant.expired") == 1


async def test_a_redeemed_grant_with_unknown_outcome_stays_reserved(policy: Policy) -> None:
    grant = await _grant(policy, 3000)
    await policy.stub.Redeem(_redeem(policy, grant))
    policy.clock.advance(timedelta(hours=5))
    assert await expiry.sweep(policy.server.pool, policy.audit_keys, policy.clock(), 100) == 0
    assert await policy.counter() == 3000
    assert await policy.customer_counter() == 3000
    committed = await policy.stub.Commit(_commit(policy, grant))
    assert committed.grant.state == pb.GRANT_STATE_COMMITTED


async def test_commit_racing_expiry_counts_each_grant_exactly_once(policy: Policy) -> None:
    issued = [await _grant(policy, 100, contact_id=f"ct_{n}") for n in range(20)]
    # The server's clock says the grants are valid; the worker's sweep says they are due:
    # whichever takes a grant's row lock first wins it. A commit that comes second finds the
    # grant expired (its reservation given back) and commits it late (counted again).
    due = policy.clock() + timedelta(hours=1)
    results = await asyncio.gather(
        expiry.sweep(policy.server.pool, policy.audit_keys, due, 7),
        *(policy.stub.Commit(_commit(policy, grant)) for grant in issued),
        return_exceptions=True,
    )
    expired_count = results[0]
    assert isinstance(expired_count, int)
    committed = results[1:]
    assert all(isinstance(o, pb.CommitResponse) for o in committed), committed
    late = [o for o in committed if isinstance(o, pb.CommitResponse) and o.committed_late]
    assert len(late) == expired_count
    for grant in issued:
        kinds = Counter(await _audit_kinds(policy, grant.grant_id))
        assert kinds["grant.committed"] + kinds["grant.committed_late"] == 1, kinds
        assert kinds["grant.expired"] == kinds["grant.committed_late"], kinds
    # Each grant counted once on its contact's counter and on the shared customer's, whether
    # its commit won the race or came late.
    total = sum(await asyncio.gather(*(policy.counter(f"ct_{n}") for n in range(20))))
    assert total == 100 * 20
    assert await policy.customer_counter() == 100 * 20


async def test_two_sweeping_replicas_expire_each_grant_once(policy: Policy) -> None:
    issued = [await _grant(policy, 100, contact_id=f"ct_{n % 4}") for n in range(30)]
    due = policy.clock() + timedelta(hours=1)
    counts = await asyncio.gather(
        *(expiry.sweep(policy.server.pool, policy.audit_keys, due, 4) for _ in range(3))
    )
    assert sum(counts) == 30
    for grant in issued:
        assert (await _audit_kinds(policy, grant.grant_id)).count("grant.expired") == 1
    assert sum([await policy.counter(f"ct_{n}") for n in range(4)]) == 0
    assert await policy.customer_counter() == 0


async def test_background_worker_expires_grants(
    policy: Policy, private_key: Ed25519PrivateKey
) -> None:
    clock = TestClock(policy.clock())

    async def key_source() -> dict[str, object]:
        return {KEY_ID: private_key.public_key()}

    settings = policy_settings(policy.database_url, expiry_interval_seconds=0.05)
    service = PolicyService(settings, key_source=key_source, clock=clock)  # type: ignore[arg-type]
    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        response = await stub.Authorize(policy.refund(700))
        assert response.decision == pb.DECISION_ALLOW
        clock.advance(timedelta(minutes=3))
        for _ in range(200):
            if await policy.counter() == 0:
                break
            await asyncio.sleep(0.05)
    assert await policy.counter() == 0
    assert await _audit_kinds(policy, response.grant.grant_id) == ["decision", "grant.expired"]
