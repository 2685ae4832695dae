"""Authorize against a real PostgreSQL: identity, caps under concurrency, windows, limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from runtime import testing

from .conftest import Policy, key, usd


async def test_refund_within_cap_is_allowed_with_a_grant_for_exact_parameters(
    policy: Policy,
) -> None:
    response = await policy.stub.Authorize(policy.refund(2000))
    assert response.decision == pb.DECISION_ALLOW
    assert response.reason == pb.DECISION_REASON_WITHIN_BOUNDS
    grant = response.grant
    assert grant.grant_id.startswith("gr_")
    assert grant.state == pb.GRANT_STATE_RESERVED
    assert grant.details.stripe_customer_id == "cus_alice"  # filled from the assertion
    assert grant.details.amount == usd(2000)
    assert grant.expires_at.ToDatetime(UTC) == policy.clock() + timedelta(seconds=120)
    assert response.usage.used_amount == usd(2000)
    assert response.usage.remaining_amount == usd(48000)
    assert response.usage.resets_at.ToDatetime(UTC) == datetime(2026, 4, 1, tzinfo=UTC)
    assert await policy.counter() == 2000
    assert await policy.customer_counter() == 2000


async def test_400_used_then_50_concurrent_20_refunds_allow_exactly_5(policy: Policy) -> None:
    first = await policy.stub.Authorize(policy.refund(40000))
    assert first.decision == pb.DECISION_ALLOW
    await policy.stub.Commit(
        pb.CommitRequest(
            workspace_id=policy.workspace_id,
            grant_id=first.grant.grant_id,
            stripe_object_id="re_1",
            idempotency_key=key(),
        )
    )
    responses = await asyncio.gather(
        *(policy.stub.Authorize(policy.refund(2000)) for _ in range(50))
    )
    allowed = [r for r in responses if r.decision == pb.DECISION_ALLOW]
    escalated = [r for r in responses if r.decision == pb.DECISION_ESCALATE]
    assert len(allowed) == 5
    assert len(escalated) == 45
    assert {r.reason for r in escalated} == {pb.DECISION_REASON_REFUND_OVER_CAP}
    assert all(r.escalation_id.startswith("esc_") for r in escalated)
    assert all(r.usage.used_amount == usd(50000) for r in escalated)
    assert all(r.usage.remaining_amount == usd(0) for r in escalated)
    assert {r.usage.scope for r in escalated} == {
        pb.COUNTER_SCOPE_VISITOR
    }  # one visitor: their own use
    assert await policy.counter() == 50000
    assert await policy.customer_counter() == 50000


async def test_ten_concurrent_plan_changes_allow_exactly_three(policy: Policy) -> None:
    responses = await asyncio.gather(
        *(policy.stub.Authorize(policy.plan_change()) for _ in range(10))
    )
    decisions = sorted(r.decision for r in responses)
    assert decisions.count(pb.DECISION_ALLOW) == 3
    denied = [r for r in responses if r.decision == pb.DECISION_DENY]
    assert len(denied) == 7
    assert {r.reason for r in denied} == {pb.DECISION_REASON_PLAN_CHANGE_LIMIT}
    assert all(r.usage.used_count == 3 and r.usage.remaining_count == 0 for r in denied)
    assert await policy.counter(counter="plan_changes") == 3


async def test_plan_changes_reset_at_the_month_boundary(policy: Policy) -> None:
    policy.clock.now = datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    january = await asyncio.gather(
        *(policy.stub.Authorize(policy.plan_change()) for _ in range(10))
    )
    assert sum(r.decision == pb.DECISION_ALLOW for r in january) == 3
    denied = next(r for r in january if r.decision == pb.DECISION_DENY)
    assert denied.usage.resets_at.ToDatetime(UTC) == datetime(2026, 2, 1, tzinfo=UTC)

    policy.clock.advance(timedelta(seconds=1))
    february = await asyncio.gather(
        *(policy.stub.Authorize(policy.plan_change()) for _ in range(10))
    )
    assert sum(r.decision == pb.DECISION_ALLOW for r in february) == 3
    denied = next(r for r in february if r.decision == pb.DECISION_DENY)
    assert denied.usage.resets_at.ToDatetime(UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    assert await policy.counter(counter="plan_changes") == 6


@pytest.mark.parametrize(
    ("age", "decision", "reason"),
    [
        (timedelta(days=14) - timedelta(seconds=1), pb.DECISION_ALLOW, 1),
        (timedelta(days=14), pb.DECISION_ALLOW, pb.DECISION_REASON_WITHIN_BOUNDS),
        (
            timedelta(days=14) + timedelta(seconds=1),
            pb.DECISION_ESCALATE,
            pb.DECISION_REASON_REFUND_OUTSIDE_WINDOW,
        ),
    ],
)
async def test_refund_window_is_fourteen_days_to_the_second(
    policy: Policy, age: timedelta, decision: int, reason: int
) -> None:
    response = await policy.stub.Authorize(policy.refund(1000, charge_age=age))
    assert response.decision == decision
    assert response.reason == reason
    assert response.refund_window.ToTimedelta() == timedelta(days=14)
    expected = 1000 if decision == pb.DECISION_ALLOW else 0
    assert await policy.counter() == expected


async def test_repeated_idempotency_key_returns_the_same_decision_and_reserves_once(
    policy: Policy,
) -> None:
    request = policy.refund(3000)
    first = await policy.stub.Authorize(request)
    again = await asyncio.gather(*(policy.stub.Authorize(request) for _ in range(5)))
    assert all(r == first for r in again)
    assert await policy.counter() == 3000
    assert await policy.customer_counter() == 3000

    other = pb.AuthorizeRequest()
    other.CopyFrom(request)
    other.details.amount.amount_minor = 4000
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.Authorize(other)
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_MISMATCH",
    )


async def test_a_retried_yes_of_the_same_person_replays_the_decision(
    policy: Policy,
) -> None:
    """A client that retries after a lost answer has its visitor verified again, which issues
    a new assertion: the retry is the same call of the same person and gets the first answer.
    Another person's assertion under the same key is another call."""
    request = policy.refund(3000)
    first = await policy.stub.Authorize(request)
    retried = pb.AuthorizeRequest()
    retried.CopyFrom(request)
    retried.identity_assertion = policy.assertion()
    assert retried.identity_assertion != request.identity_assertion
    # The retried yes is said later, with the conversation grown: the same terms still.
    assert retried.confirmation.HasField("confirmed_at")
    retried.confirmation.confirmed_at.FromSeconds(retried.confirmation.confirmed_at.seconds + 7)
    retried.context.transcript_summary = "wants $, said yes again"
    assert await policy.stub.Authorize(retried) == first
    assert await policy.counter() == 3000

    someone_else = pb.AuthorizeRequest()
    someone_else.CopyFrom(request)
    someone_else.identity_assertion = policy.assertion("ct_mallory", "cus_mallory")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.Authorize(someone_else)
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_MISMATCH",
    )


@pytest.mark.parametrize(
    ("make_assertion", "reason"),
    [
        (lambda p: "", pb.DECISION_REASON_IDENTITY_REQUIRED),
        (
            lambda p: p.assertion(private_key=Ed25519PrivateKey.generate()),
            pb.DECISION_REASON_ASSERTION_INVALID,
        ),
        (lambda p: "not.a.jwt", pb.DECISION_REASON_ASSERTION_INVALID),
        (
            lambda p: p.assertion(expires_in=-timedelta(minutes=1)),
            pb.DECISION_REASON_ASSERTION_EXPIRED,
        ),
        (lambda p: p.assertion(workspace_id="ws_other"), pb.DECISION_REASON_WORKSPACE_MISMATCH),
    ],
)
async def test_missing_forged_or_expired_assertion_is_denied_without_counter_change(
    policy: Policy, make_assertion: object, reason: int
) -> None:
    assert callable(make_assertion)
    response = await policy.stub.Authorize(policy.refund(1000, assertion=make_assertion(policy)))
    assert response.decision == pb.DECISION_DENY
    assert response.reason == reason
    assert not response.HasField("grant")
    assert await policy.counter() == 0


async def test_contact_without_customer_is_denied(policy: Policy) -> None:
    response = await policy.stub.Authorize(policy.refund(1000, customer=""))
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_CUSTOMER_NOT_LINKED,
    )


async def test_details_for_another_customer_are_denied(policy: Policy) -> None:
    request = policy.refund(1000)
    request.details.stripe_customer_id = "cus_mallory"
    response = await policy.stub.Authorize(request)
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_INVALID_DETAILS,
    )
    assert await policy.counter() == 0


async def test_unenabled_workspace_is_denied(policy: Policy) -> None:
    policy.workspace_id = "ws_free"
    response = await policy.stub.Authorize(policy.refund(1000))
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_SKILL_NOT_ENABLED,
    )


async def test_unconfirmed_refund_needs_confirmation_and_reserves_nothing(policy: Policy) -> None:
    response = await policy.stub.Authorize(policy.refund(1000, confirmed=False))
    assert response.decision == pb.DECISION_NEEDS_CONFIRMATION
    assert response.reason == pb.DECISION_REASON_CONFIRMATION_REQUIRED
    assert response.usage.remaining_amount == usd(50000)
    assert await policy.counter() == 0


async def test_unconfirmed_refund_already_over_the_cap_escalates_without_a_yes(
    policy: Policy,
) -> None:
    first = await policy.stub.Authorize(policy.refund(49000))
    assert first.decision == pb.DECISION_ALLOW
    response = await policy.stub.Authorize(policy.refund(2000, confirmed=False))
    assert (response.decision, response.reason) == (
        pb.DECISION_ESCALATE,
        pb.DECISION_REASON_REFUND_OVER_CAP,
    )
    assert response.escalation_id.startswith("esc_")
    assert response.usage.remaining_amount == usd(1000)
    assert await policy.counter() == 49000


async def test_major_currencies_have_default_caps(policy: Policy) -> None:
    # Confirmed refunds of 400 EUR, 60000 JPY, 300 GBP and 30000 INR are under the default
    # caps (500 EUR, 75000 JPY, 400 GBP, 40000 INR): allowed, not handed off as a currency
    # without a cap; 80000 JPY is over its cap and escalates as such.
    for amount, currency in ((40000, "eur"), (60000, "jpy"), (30000, "gbp"), (3_000_000, "inr")):
        response = await policy.stub.Authorize(policy.refund(amount, currency=currency))
        assert response.decision == pb.DECISION_ALLOW, (currency, response)
    over = await policy.stub.Authorize(policy.refund(80000, currency="jpy"))
    assert (over.decision, over.reason) == (
        pb.DECISION_ESCALATE,
        pb.DECISION_REASON_REFUND_OVER_CAP,
    )


async def test_currency_without_cap_escalates(policy: Policy) -> None:
    response = await policy.stub.Authorize(policy.refund(1000, currency="chf"))
    assert (response.decision, response.reason) == (
        pb.DECISION_ESCALATE,
        pb.DECISION_REASON_CURRENCY_NOT_COVERED,
    )
    escalation = await policy.stub.GetEscalation(
        pb.GetEscalationRequest(
            workspace_id=policy.workspace_id, escalation_id=response.escalation_id
        )
    )
    assert escalation.escalation.context.transcript_summary == "wants $"
    assert escalation.escalation.details.amount.currency == "chf"


async def test_confirmed_cancel_is_allowed_with_the_grace_period(policy: Policy) -> None:
    response = await policy.stub.Authorize(
        policy.action(
            common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION,
            pb.ActionDetails(subscription_id="sub_1"),
        )
    )
    assert response.decision == pb.DECISION_ALLOW
    assert response.grant.cancellation_grace.ToTimedelta() == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("action", "details"),
    [
        (common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION, pb.ActionDetails(subscription_id="sub_1")),
        (common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION, pb.ActionDetails(subscription_id="sub_1")),
        (common_pb2.BILLING_ACTION_RETRY_PAYMENT, pb.ActionDetails(invoice_id="in_1")),
    ],
)
async def test_confirmed_uncounted_actions_are_allowed_for_a_verified_visitor(
    policy: Policy, action: common_pb2.BillingAction.ValueType, details: pb.ActionDetails
) -> None:
    request = policy.action(action, details)
    response = await policy.stub.Authorize(request)
    assert response.decision == pb.DECISION_ALLOW
    assert not response.HasField("usage")
    request.identity_assertion = ""
    request.idempotency_key = key()
    denied = await policy.stub.Authorize(request)
    assert denied.decision == pb.DECISION_DENY


async def test_missing_details_are_denied_as_invalid(policy: Policy) -> None:
    request = policy.refund(0)
    response = await policy.stub.Authorize(request)
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_INVALID_DETAILS,
    )


async def test_request_without_key_or_action_is_invalid(policy: Policy) -> None:
    request = policy.refund(1000)
    request.idempotency_key = ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.Authorize(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = policy.refund(1000)
    request.action = common_pb2.BILLING_ACTION_UNSPECIFIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.Authorize(request)
    assert testing.error_details(raised.value)[2].keys() == {"action"}
