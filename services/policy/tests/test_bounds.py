"""Bounds: defaults, one-admin changes, and the two-admin rule for loosening past defaults."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from runtime import testing

from .conftest import Policy, key, usd


def _approve(policy: Policy, change_id: str, admin: str) -> object:
    return policy.stub.ApproveBoundsChange(
        pb.ApproveBoundsChangeRequest(
            workspace_id=policy.workspace_id, change_id=change_id, idempotency_key=key()
        ),
        metadata=testing.admin_metadata(admin),
    )


async def test_unknown_workspace_has_defaults_without_the_skill(policy: Policy) -> None:
    response = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id="ws_new"))
    bounds = response.bounds
    assert bounds.askvault_plan == pb.ASK_VAULT_PLAN_UNSPECIFIED
    # The major currencies each have a default cap, in their own minor units (yen have none).
    caps = {cap.currency: cap.amount_minor for cap in bounds.refund_caps}
    assert caps == {
        "usd": 50000,
        "eur": 50000,
        "gbp": 40000,
        "cad": 70000,
        "aud": 75000,
        "jpy": 75000,
        "inr": 4000000,
    }
    assert bounds.refund_window.ToTimedelta() == timedelta(days=14)
    assert bounds.plan_changes_per_period == 3
    assert bounds.cancellation_grace.ToTimedelta() == timedelta(seconds=30)
    assert bounds.confirm_refunds and bounds.confirm_plan_changes
    assert bounds.counter_period == pb.COUNTER_PERIOD_CALENDAR_MONTH


async def test_tightening_applies_at_once_with_one_admin(policy: Policy) -> None:
    change = (await policy.set_bounds(refund_caps=[usd(10000)])).change
    assert change.state == pb.BOUNDS_CHANGE_STATE_APPLIED
    assert list(change.loosened_fields) == []
    response = await policy.stub.Authorize(policy.refund(15000))
    assert response.reason == pb.DECISION_REASON_REFUND_OVER_CAP


async def test_raised_cap_needs_a_second_different_admin(policy: Policy) -> None:
    change = (await policy.set_bounds(refund_caps=[usd(100000)])).change
    assert change.state == pb.BOUNDS_CHANGE_STATE_PENDING
    assert list(change.loosened_fields) == ["refund_caps.usd"]
    # Not in force yet.
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision == pb.DECISION_ESCALATE

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _approve(policy, change.change_id, "admin-alice")  # type: ignore[misc]
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SECOND_ADMIN_REQUIRED",
    )
    applied = await _approve(policy, change.change_id, "admin-bob")  # type: ignore[misc]
    assert applied.change.state == pb.BOUNDS_CHANGE_STATE_APPLIED
    assert applied.change.approved_by == "admin-bob"
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision == pb.DECISION_ALLOW


@pytest.mark.parametrize(
    ("changes", "loosened"),
    [
        ({"plan_changes_per_period": 4}, ["plan_changes_per_period"]),
        ({"refund_window": timedelta(days=15)}, ["refund_window"]),
        ({"cancellation_grace": timedelta(seconds=29)}, ["cancellation_grace"]),
        ({"confirm_refunds": False}, ["confirm_refunds"]),
        ({"counter_period": pb.COUNTER_PERIOD_CALENDAR_DAY}, ["counter_period"]),
        (
            {"refund_caps": [usd(50000), common_pb2.Money(amount_minor=1, currency="chf")]},
            ["refund_caps.chf"],
        ),
        (
            {"refund_caps": [common_pb2.Money(amount_minor=50001, currency="eur")]},
            ["refund_caps.eur"],
        ),
    ],
)
async def test_each_loosening_past_defaults_waits_for_a_second_admin(
    policy: Policy, changes: dict[str, object], loosened: list[str]
) -> None:
    change = (await policy.set_bounds(**changes)).change  # type: ignore[arg-type]
    assert change.state == pb.BOUNDS_CHANGE_STATE_PENDING
    assert list(change.loosened_fields) == loosened


async def test_a_newer_proposal_supersedes_a_pending_one(policy: Policy) -> None:
    pending = (await policy.set_bounds(plan_changes_per_period=10)).change
    await policy.set_bounds(plan_changes_per_period=2)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _approve(policy, pending.change_id, "admin-bob")  # type: ignore[misc]
    assert testing.error_details(raised.value)[1] == "NOT_PENDING"
    listed = await policy.stub.ListBoundsChanges(
        pb.ListBoundsChangesRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    states = {c.change_id: c.state for c in listed.changes}
    assert states[pending.change_id] == pb.BOUNDS_CHANGE_STATE_SUPERSEDED
    bounds = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id=policy.workspace_id))
    assert bounds.bounds.plan_changes_per_period == 2


async def test_admin_rpcs_refuse_non_admins(policy: Policy) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.ProposeBoundsChange(
            pb.ProposeBoundsChangeRequest(
                workspace_id=policy.workspace_id, bounds=pb.Bounds(), idempotency_key=key()
            ),
            metadata=(("authorization", "Bearer nonsense"),),
        )
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.UNAUTHENTICATED,
        "ADMIN_REQUIRED",
    )


async def test_nonsense_bounds_are_invalid(policy: Policy) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.set_bounds(refund_caps=[usd(-1)], plan_changes_per_period=-2)
    code, reason, violations = testing.error_details(raised.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(violations) == {
        "bounds.refund_caps[0].amount_minor",
        "bounds.plan_changes_per_period",
    }


def _minted_from_what_a_pod_holds(subject: str, workspace_id: str) -> str:
    """What someone with a policy pod can make: its settings hold the provider's public keys
    (ADMIN_JWKS_FILE) and nothing that signs. The best they can do is an HMAC keyed with a
    published key (algorithm confusion), or the HS256 scheme with the key every pod held
    before admin identity came from a provider."""
    import json
    import time
    from pathlib import Path

    import jwt

    published = json.loads(Path(testing.TEST_ADMIN_JWKS_FILE).read_text())["keys"][0]
    now = int(time.time())
    claims = {
        "iss": testing.TEST_ADMIN_ISSUER,
        "aud": "askvault-admin",
        "sub": subject,
        "role": "admin",
        "roles": ["askvault-admin"],
        "askvault_workspaces": [workspace_id],
        "iat": now,
        "exp": now + 600,
    }
    key = published["x"] if subject.endswith("-1") else "test-admin-token-secret-0123456789abcdef"
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": published["kid"]})


async def test_two_made_up_subjects_cannot_pass_the_two_admin_rule(policy: Policy) -> None:
    change = (await policy.set_bounds(refund_caps=[usd(100000)])).change
    assert change.state == pb.BOUNDS_CHANGE_STATE_PENDING
    for made_up in ("mallory-1", "mallory-2"):
        token = _minted_from_what_a_pod_holds(made_up, policy.workspace_id)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await policy.stub.ApproveBoundsChange(
                pb.ApproveBoundsChangeRequest(
                    workspace_id=policy.workspace_id,
                    change_id=change.change_id,
                    idempotency_key=key(),
                ),
                metadata=(("authorization", f"Bearer {token}"),),
            )
        assert testing.error_details(raised.value)[:2] == (
            grpc.StatusCode.UNAUTHENTICATED,
            "ADMIN_REQUIRED",
        )
    # Still pending, still not in force: only a second person of the provider applies it.
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision == pb.DECISION_ESCALATE
    await _approve(policy, change.change_id, "admin-bob")  # type: ignore[misc]
    response = await policy.stub.Authorize(policy.refund(60000))
    assert response.decision != pb.DECISION_ESCALATE


async def test_counter_periods_follow_the_workspace_time_zone(policy: Policy) -> None:
    # Moving the zone moves the start of the current period: a second admin approves it.
    proposed = (await policy.set_bounds(time_zone="Asia/Kolkata")).change
    assert proposed.state == pb.BOUNDS_CHANGE_STATE_PENDING
    assert list(proposed.loosened_fields) == ["time_zone"]
    await _approve(policy, proposed.change_id, "admin-bob")  # type: ignore[misc]
    bounds = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id=policy.workspace_id))
    assert bounds.bounds.time_zone == "Asia/Kolkata"
    assert bounds.defaults.time_zone == "UTC"
    # Kolkata is UTC+5:30: its February begins on 31 January at 18:30 UTC, not at midnight.
    policy.clock.now = datetime(2026, 1, 31, 18, 29, 59, tzinfo=UTC)
    january = await asyncio.gather(*(policy.stub.Authorize(policy.plan_change()) for _ in range(5)))
    assert sum(r.decision == pb.DECISION_ALLOW for r in january) == 3
    denied = next(r for r in january if r.decision == pb.DECISION_DENY)
    assert denied.usage.resets_at.ToDatetime(UTC) == datetime(2026, 1, 31, 18, 30, tzinfo=UTC)
    policy.clock.advance(timedelta(seconds=1))  # 00:00:00 on 1 February in Kolkata
    february = await asyncio.gather(
        *(policy.stub.Authorize(policy.plan_change()) for _ in range(5))
    )
    assert sum(r.decision == pb.DECISION_ALLOW for r in february) == 3
    denied = next(r for r in february if r.decision == pb.DECISION_DENY)
    assert denied.usage.resets_at.ToDatetime(UTC) == datetime(2026, 2, 28, 18, 30, tzinfo=UTC)
    # Keeping the zone is no loosening: a tightening applies at once.
    kept = (await policy.set_bounds(time_zone="Asia/Kolkata", plan_changes_per_period=2)).change
    assert kept.state == pb.BOUNDS_CHANGE_STATE_APPLIED


async def test_unknown_time_zone_is_invalid(policy: Policy) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.set_bounds(time_zone="Mars/Olympus_Mons")
    code, reason, *_ = testing.error_details(raised.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
