"""Which prices a customer may switch to by themselves, and resubscriptions, are policy's:
the self-serve list is a bound (history, a second admin to widen it), Authorize denies a
move to another price, Redeem checks the list in force again, a resubscription counts on its
own counter, and GetWorkspaceTerms tells the edge the terms it speaks by."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import grpc
import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy.tests.conftest import Policy, key, usd
from runtime import testing

LISTED = "price_growth"
OTHER = "price_enterprise"


def _move(
    policy: Policy,
    target: str,
    *,
    action: common_pb2.BillingAction.ValueType = common_pb2.BILLING_ACTION_CHANGE_PLAN,
    confirmed: bool = True,
    contact_id: str = "ct_alice",
) -> pb.AuthorizeRequest:
    return policy.action(
        action,
        pb.ActionDetails(subscription_id="sub_1", target_price_id=target),
        contact_id=contact_id,
        confirmed=confirmed,
    )


async def _audit(policy: Policy, kind: str) -> list[asyncpg.Record]:
    await policy.chain()
    connection = await asyncpg.connect(policy.database_url)
    try:
        return list(
            await connection.fetch(
                "SELECT action, outcome, subject_id FROM policy.audit_events"
                " WHERE workspace_id = $1 AND kind = $2 ORDER BY sequence",
                policy.workspace_id,
                kind,
            )
        )
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "action",
    [common_pb2.BILLING_ACTION_CHANGE_PLAN, common_pb2.BILLING_ACTION_START_RESUBSCRIPTION],
)
async def test_a_move_to_a_price_the_workspace_does_not_list_is_denied_and_reserves_nothing(
    policy: Policy, action: common_pb2.BillingAction.ValueType
) -> None:
    # Attack: a crafted tool call (or a model) proposes a price outside the workspace's
    # self-serve list, with a "yes" that matches its own terms. Before the list was policy's,
    # only the edge's offer filtered prices and this was ALLOW with a grant.
    await policy.set_bounds(self_serve_price_ids=[LISTED])
    for confirmed in (False, True):
        decided = await policy.stub.Authorize(
            _move(policy, OTHER, action=action, confirmed=confirmed)
        )
        assert decided.decision == pb.DECISION_DENY, decided
        assert decided.reason == pb.DECISION_REASON_PRICE_NOT_SELF_SERVE
        assert not decided.HasField("grant") and not decided.escalation_id
    counter = (
        "plan_changes" if action == common_pb2.BILLING_ACTION_CHANGE_PLAN else "resubscriptions"
    )
    assert await policy.counter(counter=counter) == 0
    assert await policy.customer_counter(counter=counter) == 0
    denials = [row for row in await _audit(policy, "decision") if row["outcome"].startswith("DENY")]
    assert [row["outcome"] for row in denials] == ["DENY:PRICE_NOT_SELF_SERVE"] * 2
    # The listed price goes through as before.
    allowed = await policy.stub.Authorize(_move(policy, LISTED, action=action))
    assert allowed.decision == pb.DECISION_ALLOW, allowed
    assert allowed.grant.details.target_price_id == LISTED


async def test_an_empty_list_leaves_the_price_to_the_gateways_default(policy: Policy) -> None:
    decided = await policy.stub.Authorize(_move(policy, OTHER))
    assert decided.decision == pb.DECISION_ALLOW, decided


async def test_a_list_narrowed_after_the_grant_refuses_its_redemption(policy: Policy) -> None:
    await policy.set_bounds(self_serve_price_ids=[LISTED, OTHER])
    grant = (await policy.stub.Authorize(_move(policy, OTHER))).grant
    narrowed = await policy.set_bounds(self_serve_price_ids=[LISTED])
    assert narrowed.change.state == pb.BOUNDS_CHANGE_STATE_APPLIED  # narrowing: one admin
    redeem = pb.RedeemRequest(
        workspace_id=policy.workspace_id,
        grant_id=grant.grant_id,
        action=grant.action,
        details=grant.details,
        idempotency_key=key("redeem"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policy.stub.Redeem(redeem)
    code, reason, _ = testing.error_details(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_NOT_SELF_SERVE")
    outcomes = [row["outcome"] for row in await _audit(policy, "grant.redeem_refused")]
    assert outcomes == ["REFUSED:PRICE_NOT_SELF_SERVE"]


async def test_widening_or_emptying_the_list_waits_for_a_second_admin(policy: Policy) -> None:
    first = await policy.set_bounds(self_serve_price_ids=[LISTED, OTHER, LISTED])
    # Naming prices where none were named narrows the default: applied at once, once each.
    assert first.change.state == pb.BOUNDS_CHANGE_STATE_APPLIED
    assert list(first.change.proposed.self_serve_price_ids) == [LISTED, OTHER]
    narrowed = await policy.set_bounds(self_serve_price_ids=[LISTED])
    assert narrowed.change.state == pb.BOUNDS_CHANGE_STATE_APPLIED
    for widened in ([LISTED, OTHER], []):
        pending = await policy.set_bounds(self_serve_price_ids=widened)
        assert pending.change.state == pb.BOUNDS_CHANGE_STATE_PENDING, widened
        assert list(pending.change.loosened_fields) == ["self_serve_price_ids"]
    in_force = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id=policy.workspace_id))
    assert list(in_force.bounds.self_serve_price_ids) == [LISTED]
    # The history shows every list proposed.
    history = await policy.stub.ListBoundsChanges(
        pb.ListBoundsChangesRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata("admin-alice"),
    )
    proposed = sorted(tuple(c.proposed.self_serve_price_ids) for c in history.changes)
    assert proposed == [(), (), (LISTED,), (LISTED, OTHER), (LISTED, OTHER)]
    emptied = next(
        c
        for c in history.changes
        if c.state == pb.BOUNDS_CHANGE_STATE_PENDING and not c.proposed.self_serve_price_ids
    )
    approved = await policy.stub.ApproveBoundsChange(
        pb.ApproveBoundsChangeRequest(
            workspace_id=policy.workspace_id,
            change_id=emptied.change_id,
            idempotency_key=key("approve"),
        ),
        metadata=testing.admin_metadata("admin-bob"),
    )
    assert approved.change.state == pb.BOUNDS_CHANGE_STATE_APPLIED
    assert (await policy.stub.Authorize(_move(policy, OTHER))).decision == pb.DECISION_ALLOW


@pytest.mark.parametrize(
    "prices", [["prod_123"], ["price_x; DROP"], [f"price_{i}" for i in range(51)]]
)
async def test_a_list_of_other_things_than_prices_is_refused(
    policy: Policy, prices: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policy.set_bounds(self_serve_price_ids=prices)
    code, _, violations = testing.error_details(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "bounds.self_serve_price_ids" in violations


async def test_resubscriptions_have_their_own_counter_and_limit(policy: Policy) -> None:
    await policy.set_bounds(plan_changes_per_period=1, resubscriptions_per_period=1)
    resubscribe = common_pb2.BILLING_ACTION_START_RESUBSCRIPTION
    started = await policy.stub.Authorize(_move(policy, LISTED, action=resubscribe))
    assert started.decision == pb.DECISION_ALLOW, started
    assert started.grant.action == resubscribe
    assert started.usage.action == resubscribe and started.usage.limit_count == 1
    assert await policy.counter(counter="resubscriptions") == 1
    assert await policy.counter(counter="plan_changes") == 0
    again = await policy.stub.Authorize(_move(policy, LISTED, action=resubscribe))
    assert again.decision == pb.DECISION_DENY
    assert again.reason == pb.DECISION_REASON_RESUBSCRIPTION_LIMIT
    assert again.usage.used_count == 1 and again.usage.remaining_count == 0
    # The plan change counter was left alone.
    changed = await policy.stub.Authorize(_move(policy, LISTED))
    assert changed.decision == pb.DECISION_ALLOW, changed
    # A grant for one kind never redeems as the other.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policy.stub.Redeem(
            pb.RedeemRequest(
                workspace_id=policy.workspace_id,
                grant_id=started.grant.grant_id,
                action=common_pb2.BILLING_ACTION_CHANGE_PLAN,
                details=started.grant.details,
                idempotency_key=key("redeem"),
            )
        )
    assert testing.error_details(refused.value)[1] == "GRANT_INVALID"
    decisions = await _audit(policy, "decision")
    assert [row["action"] for row in decisions] == [
        "start_resubscription",
        "start_resubscription",
        "change_plan",
    ]
    assert decisions[1]["outcome"] == "DENY:RESUBSCRIPTION_LIMIT"


async def test_more_resubscriptions_than_the_default_wait_for_a_second_admin(
    policy: Policy,
) -> None:
    defaults = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id=policy.workspace_id))
    limit = defaults.defaults.resubscriptions_per_period
    assert limit == 2
    pending = await policy.set_bounds(resubscriptions_per_period=limit + 1)
    assert list(pending.change.loosened_fields) == ["resubscriptions_per_period"]


async def test_workspace_terms_tell_the_edge_the_zone_prices_and_caps(policy: Policy) -> None:
    unknown = await policy.stub.GetWorkspaceTerms(pb.GetWorkspaceTermsRequest(workspace_id="ws_x"))
    assert unknown.time_zone == "UTC" and not unknown.self_serve_price_ids
    assert usd(50000) in unknown.refund_caps
    await policy.set_bounds(
        self_serve_price_ids=[LISTED], refund_caps=[usd(10000)], time_zone="Asia/Kolkata"
    )
    bounds = await policy.stub.GetBounds(pb.GetBoundsRequest(workspace_id=policy.workspace_id))
    # The zone moved the period start: it waits for a second admin, the rest too meanwhile.
    assert bounds.bounds.time_zone == "UTC"
    pending = await policy.stub.ListBoundsChanges(
        pb.ListBoundsChangesRequest(
            workspace_id=policy.workspace_id, state=pb.BOUNDS_CHANGE_STATE_PENDING
        ),
        metadata=testing.admin_metadata("admin-alice"),
    )
    await policy.stub.ApproveBoundsChange(
        pb.ApproveBoundsChangeRequest(
            workspace_id=policy.workspace_id,
            change_id=pending.changes[0].change_id,
            idempotency_key=key("approve"),
        ),
        metadata=testing.admin_metadata("admin-bob"),
    )
    terms = await policy.stub.GetWorkspaceTerms(
        pb.GetWorkspaceTermsRequest(workspace_id=policy.workspace_id)
    )
    assert terms.time_zone == "Asia/Kolkata"
    assert list(terms.self_serve_price_ids) == [LISTED]
    assert list(terms.refund_caps) == [usd(10000)]
    assert terms.refund_window.ToTimedelta() == timedelta(days=14)
    assert terms.counter_period == pb.COUNTER_PERIOD_CALENDAR_MONTH
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await policy.stub.GetWorkspaceTerms(pb.GetWorkspaceTermsRequest())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_admin_may_approve_a_move_to_a_price_not_listed(policy: Policy) -> None:
    # A price the workspace does not offer is a human's call: once an admin approved an
    # escalated move, its grant redeems whatever the list says.
    await policy.set_bounds(self_serve_price_ids=[LISTED])
    opened = await policy.stub.OpenEscalation(
        pb.OpenEscalationRequest(
            workspace_id=policy.workspace_id,
            identity_assertion=policy.assertion(),
            action=common_pb2.BILLING_ACTION_CHANGE_PLAN,
            details=pb.ActionDetails(subscription_id="sub_1", target_price_id=OTHER),
            reason="VISITOR_ASKED",
            idempotency_key=key("open"),
        )
    )
    approved = await policy.stub.ApproveEscalation(
        pb.ApproveEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=opened.escalation.escalation_id,
            idempotency_key=key("approve"),
        ),
        metadata=testing.admin_metadata("admin-bob"),
    )
    grant = approved.grant
    redeemed = await policy.stub.Redeem(
        pb.RedeemRequest(
            workspace_id=policy.workspace_id,
            grant_id=grant.grant_id,
            action=grant.action,
            details=grant.details,
            idempotency_key=key("redeem"),
        )
    )
    assert redeemed.grant.state == pb.GRANT_STATE_REDEEMED
