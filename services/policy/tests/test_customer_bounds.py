"""Bounds per Stripe customer as well as per visitor: several contacts bound to one customer
share the customer's cap and plan-change limit, the reply names the bound reached, and
release, expiry and approvals move both counters."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import grpc
import pytest

from askvault.policy.v1 import policy_pb2 as pb
from policy import expiry
from runtime import testing

from .conftest import Policy, key, usd

SHARED = "cus_shared"
CONTACTS = ("ct_a", "ct_b", "ct_c")


async def _visitor_total(policy: Policy, counter: str = "refund_amount") -> int:
    return sum([await policy.counter(contact, counter) for contact in CONTACTS])


async def test_three_contacts_of_one_customer_at_the_cap_edge_never_exceed_it(
    policy: Policy,
) -> None:
    # Attack: each contact asks for the full $500 of the same customer.
    responses = [
        await policy.stub.Authorize(policy.refund(50000, contact_id=contact, customer=SHARED))
        for contact in CONTACTS
    ]
    assert [r.decision for r in responses] == [
        pb.DECISION_ALLOW,
        pb.DECISION_ESCALATE,
        pb.DECISION_ESCALATE,
    ]
    for refused in responses[1:]:
        assert refused.reason == pb.DECISION_REASON_REFUND_OVER_CAP
        assert refused.usage.scope == pb.COUNTER_SCOPE_CUSTOMER
        assert refused.usage.used_amount == usd(50000)
        assert refused.usage.remaining_amount == usd(0)
        assert not refused.HasField("grant")
    assert await policy.customer_counter(SHARED) == 50000
    assert await _visitor_total(policy) == 50000


async def test_contacts_of_one_customer_racing_at_the_cap_allow_exactly_the_cap(
    policy: Policy,
) -> None:
    requests = [
        policy.refund(2000, contact_id=contact, customer=SHARED)
        for _ in range(15)
        for contact in CONTACTS
    ]
    responses = await asyncio.gather(*(policy.stub.Authorize(r) for r in requests))
    allowed = [r for r in responses if r.decision == pb.DECISION_ALLOW]
    escalated = [r for r in responses if r.decision == pb.DECISION_ESCALATE]
    assert len(allowed) == 25
    assert len(escalated) == 20
    assert {r.reason for r in escalated} == {pb.DECISION_REASON_REFUND_OVER_CAP}
    assert {r.usage.scope for r in escalated} == {pb.COUNTER_SCOPE_CUSTOMER}
    assert await policy.customer_counter(SHARED) == 50000
    assert await _visitor_total(policy) == 50000


async def test_plan_changes_are_limited_per_customer_across_contacts(policy: Policy) -> None:
    requests = [
        policy.plan_change(contact_id=contact, customer=SHARED)
        for _ in range(3)
        for contact in CONTACTS
    ]
    responses = await asyncio.gather(*(policy.stub.Authorize(r) for r in requests))
    assert sum(r.decision == pb.DECISION_ALLOW for r in responses) == 3
    denied = [r for r in responses if r.decision == pb.DECISION_DENY]
    assert len(denied) == 6
    assert {r.reason for r in denied} == {pb.DECISION_REASON_PLAN_CHANGE_LIMIT}
    assert {r.usage.scope for r in denied} == {pb.COUNTER_SCOPE_CUSTOMER}
    assert all(r.usage.used_count == 3 and r.usage.remaining_count == 0 for r in denied)
    assert await policy.customer_counter(SHARED, "plan_changes") == 3
    assert await _visitor_total(policy, "plan_changes") == 3


async def test_the_reply_names_the_visitor_bound_when_only_the_visitor_is_spent(
    policy: Policy,
) -> None:
    # A contact that used $400 for one customer and was later bound to another: the new
    # customer has everything left, the visitor does not.
    first = await policy.stub.Authorize(policy.refund(40000, customer="cus_old"))
    assert first.decision == pb.DECISION_ALLOW
    refused = await policy.stub.Authorize(policy.refund(20000, customer="cus_new"))
    assert (refused.decision, refused.reason) == (
        pb.DECISION_ESCALATE,
        pb.DECISION_REASON_REFUND_OVER_CAP,
    )
    assert refused.usage.scope == pb.COUNTER_SCOPE_VISITOR
    assert refused.usage.used_amount == usd(40000)
    assert refused.usage.remaining_amount == usd(10000)
    assert await policy.customer_counter("cus_new") == 0
    assert await policy.customer_counter("cus_old") == 40000
    assert await policy.counter() == 40000
    # Within both: allowed, and the usage shown is the tighter bound (the visitor's).
    allowed = await policy.stub.Authorize(policy.refund(10000, customer="cus_new"))
    assert allowed.decision == pb.DECISION_ALLOW
    assert allowed.usage.scope == pb.COUNTER_SCOPE_VISITOR
    assert allowed.usage.remaining_amount == usd(0)
    assert await policy.customer_counter("cus_new") == 10000


async def test_an_unconfirmed_request_already_over_the_customer_cap_escalates(
    policy: Policy,
) -> None:
    spent = await policy.stub.Authorize(policy.refund(49000, contact_id="ct_a", customer=SHARED))
    assert spent.decision == pb.DECISION_ALLOW
    response = await policy.stub.Authorize(
        policy.refund(2000, contact_id="ct_b", customer=SHARED, confirmed=False)
    )
    assert (response.decision, response.reason) == (
        pb.DECISION_ESCALATE,
        pb.DECISION_REASON_REFUND_OVER_CAP,
    )
    assert response.usage.scope == pb.COUNTER_SCOPE_CUSTOMER
    assert response.usage.remaining_amount == usd(1000)
    assert await policy.counter("ct_b") == 0


async def test_release_frees_both_the_customer_and_the_visitor_counter(policy: Policy) -> None:
    allowed = await policy.stub.Authorize(policy.refund(30000, contact_id="ct_a", customer=SHARED))
    assert allowed.decision == pb.DECISION_ALLOW
    assert (await policy.customer_counter(SHARED), await policy.counter("ct_a")) == (30000, 30000)
    await policy.stub.Release(
        pb.ReleaseRequest(
            workspace_id=policy.workspace_id,
            grant_id=allowed.grant.grant_id,
            reason="card_declined",
            idempotency_key=key(),
        )
    )
    assert (await policy.customer_counter(SHARED), await policy.counter("ct_a")) == (0, 0)
    # The freed allowance is there again for another contact of the customer.
    again = await policy.stub.Authorize(policy.refund(50000, contact_id="ct_b", customer=SHARED))
    assert again.decision == pb.DECISION_ALLOW


@pytest.mark.parametrize("lazily", [False, True])
async def test_expiry_frees_both_counters(policy: Policy, lazily: bool) -> None:
    grants = [
        (
            await policy.stub.Authorize(policy.refund(5000, contact_id=contact, customer=SHARED))
        ).grant
        for contact in CONTACTS
    ]
    assert all(grant.grant_id for grant in grants)
    assert await policy.customer_counter(SHARED) == 15000
    policy.clock.advance(timedelta(seconds=121))
    if lazily:
        for grant in grants:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await policy.stub.Release(
                    pb.ReleaseRequest(
                        workspace_id=policy.workspace_id,
                        grant_id=grant.grant_id,
                        reason="NOT_PERFORMED",
                        idempotency_key=key(),
                    )
                )
            assert testing.error_details(raised.value)[1] == "GRANT_EXPIRED"
    else:
        assert await expiry.sweep(policy.server.pool, policy.audit_keys, policy.clock(), 2) == 3
    assert await policy.customer_counter(SHARED) == 0
    assert await _visitor_total(policy) == 0


async def test_an_approved_escalation_counts_on_both_counters(policy: Policy) -> None:
    over = await policy.stub.Authorize(policy.refund(60000, contact_id="ct_a", customer=SHARED))
    assert over.decision == pb.DECISION_ESCALATE
    approved = await policy.stub.ApproveEscalation(
        pb.ApproveEscalationRequest(
            workspace_id=policy.workspace_id,
            escalation_id=over.escalation_id,
            idempotency_key=key(),
        ),
        metadata=testing.admin_metadata("admin-bob"),
    )
    assert approved.grant.details.amount == usd(60000)
    assert await policy.customer_counter(SHARED) == 60000
    assert await policy.counter("ct_a") == 60000
    # Another contact of the same customer has nothing left either.
    other = await policy.stub.Authorize(policy.refund(100, contact_id="ct_b", customer=SHARED))
    assert other.reason == pb.DECISION_REASON_REFUND_OVER_CAP
    assert other.usage.scope == pb.COUNTER_SCOPE_CUSTOMER
    await policy.stub.Release(
        pb.ReleaseRequest(
            workspace_id=policy.workspace_id,
            grant_id=approved.grant.grant_id,
            reason="stripe_error",
            idempotency_key=key(),
        )
    )
    assert (await policy.customer_counter(SHARED), await policy.counter("ct_a")) == (0, 0)


async def _held(policy: Policy) -> int:
    """What the customer's grants still hold: reserved, redeemed or committed."""
    connection = await asyncpg.connect(policy.database_url)
    try:
        held = await connection.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM policy.grants WHERE workspace_id = $1"
            " AND stripe_customer_id = $2 AND state IN ('reserved', 'redeemed', 'committed')",
            policy.workspace_id,
            SHARED,
        )
    finally:
        await connection.close()
    return int(held)


async def test_reservations_releases_and_expiry_racing_on_one_customer_stay_exact(
    policy: Policy,
) -> None:
    # Both rows are locked customer first everywhere: no deadlock, and the two counters
    # always equal what the grants hold.
    first = [
        (
            await policy.stub.Authorize(policy.refund(1000, contact_id=contact, customer=SHARED))
        ).grant
        for _ in range(4)
        for contact in CONTACTS
    ]
    assert all(grant.grant_id for grant in first)
    releases = [
        policy.stub.Release(
            pb.ReleaseRequest(
                workspace_id=policy.workspace_id,
                grant_id=grant.grant_id,
                reason="card_declined",
                idempotency_key=key(),
            )
        )
        for grant in first[::2]
    ]
    authorizations = [
        policy.stub.Authorize(policy.refund(3000, contact_id=contact, customer=SHARED))
        for _ in range(6)
        for contact in CONTACTS
    ]
    due = policy.clock() + timedelta(hours=1)
    results = await asyncio.gather(
        *releases,
        *authorizations,
        expiry.sweep(policy.server.pool, policy.audit_keys, due, 3),
        expiry.sweep(policy.server.pool, policy.audit_keys, due, 5),
        return_exceptions=True,
    )
    # A release may lose its grant to the sweep (GRANT_EXPIRED); nothing else may fail.
    for result in results:
        if isinstance(result, grpc.aio.AioRpcError):
            assert testing.error_details(result)[1] == "GRANT_EXPIRED", result
        else:
            assert not isinstance(result, BaseException), result
    allowed = [
        r
        for r in results
        if isinstance(r, pb.AuthorizeResponse) and r.decision == pb.DECISION_ALLOW
    ]
    assert allowed
    held = await _held(policy)
    assert held <= 50000
    assert await policy.customer_counter(SHARED) == held
    assert await _visitor_total(policy) == held
