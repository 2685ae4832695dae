"""Which prices a customer may switch to by themselves is decided by policy (and, with no list,
by the billing gateway against what Stripe says), not by the edge's offer; the edge speaks in
the workspace's time zone as policy holds it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from askvault.billing.v1 import billing_pb2
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2
from askvault.policy.v1 import policy_pb2
from edge.domain import formatting
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack, user_hash
from tests.e2e.test_billing_flows import _plan
from tests.e2e.test_policy_flows import _set_bounds


async def _assertion(stack: Stack, user: str) -> tuple[str, str]:
    """The visitor's identity assertion and Stripe customer, as any caller holding the
    visitor's own proof gets them (a first chat turn binds the contact to its customer)."""
    await stack.turn(user, "what plan am I on?", conversation=f"bind-{user}")
    verified = await stack.identity.VerifyVisitor(
        identity_pb2.VerifyVisitorRequest(
            workspace_id=WORKSPACE, user_id=user, user_hash=user_hash(user)
        ),
        timeout=5,
    )
    return verified.identity_assertion, verified.contact.stripe_customer_id


async def _price_now(stack: Stack, subscription_id: str) -> str:
    subscription = await stack.stripe.v1.subscriptions.retrieve_async(subscription_id)
    return str(subscription["items"]["data"][0]["price"]["id"])


async def _crafted_authorize(
    stack: Stack, user: str, subscription_id: str, target: str, key: str
) -> policy_pb2.AuthorizeResponse:
    """What a crafted tool call or a model would send policy for a move to ``target``: the
    visitor's real assertion and a "yes" quoting exactly these terms."""
    assertion, customer = await _assertion(stack, user)
    request = policy_pb2.AuthorizeRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        action=common_pb2.BILLING_ACTION_CHANGE_PLAN,
        details=policy_pb2.ActionDetails(
            stripe_customer_id=customer, subscription_id=subscription_id, target_price_id=target
        ),
        idempotency_key=key,
    )
    answer: policy_pb2.AuthorizeResponse = await stack.policy.Authorize(
        testing.confirmed(request, summary=f"Move to {target}"), timeout=5
    )
    return answer


async def test_a_crafted_move_to_a_price_not_listed_is_refused_at_policy_and_moves_nothing(
    stack: Stack,
) -> None:
    # Attack: the workspace offers Starter only; a tool call (or a model) asks policy for
    # Business directly, with the visitor's own assertion and a "yes" matching the terms.
    # Before policy held the list (identity's, read only by the edge's offer), this was
    # ALLOW and ChangePlan moved the subscription in Stripe.
    starter = stack.summary["products"]["starter"]["prices"]["usd"]
    business = stack.summary["products"]["business"]["prices"]["usd"]
    await _set_bounds(stack, "self-serve-attack", self_serve_price_ids=[starter])
    subscription_id = stack.customer("alice@example.com")["subscription"]
    before = await _price_now(stack, subscription_id)
    decided = await _crafted_authorize(stack, "alice", subscription_id, business, "attack-1")
    assert decided.decision == policy_pb2.DECISION_DENY, decided
    assert decided.reason == policy_pb2.DECISION_REASON_PRICE_NOT_SELF_SERVE
    assert not decided.grant.grant_id
    # Without a grant the gateway writes nothing.
    assertion, _ = await _assertion(stack, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.ChangePlan(
            billing_pb2.ChangePlanRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                grant_id="gr_made_up",
                subscription_id=subscription_id,
                target_price_id=business,
                idempotency_key="attack-change",
            ),
            timeout=10,
        )
    assert testing.error_details(refused.value)[1] == "GRANT_INVALID"
    # The tool a model holds cannot name it either.
    status, tool = await stack.tool("alice", "change_plan", {"plan": "Business"})
    assert status == 200 and "quote" not in tool.get("data", {}), tool
    assert await _price_now(stack, subscription_id) == before


async def test_with_no_list_the_gateway_refuses_a_price_billed_at_another_interval(
    stack: Stack,
) -> None:
    # Attack: the workspace lists no prices, so policy lets any price through; a crafted
    # call moves a monthly subscriber to a yearly price (the edge would never offer it).
    # Before, ChangePlan made that move in Stripe; now the gateway checks the price it reads
    # from Stripe against the subscription's before writing.
    quartz = await _plan(stack, "Quartz", 99000, "year")
    subscription_id = stack.customer("alice@example.com")["subscription"]
    before = await _price_now(stack, subscription_id)
    decided = await _crafted_authorize(stack, "alice", subscription_id, quartz, "attack-2")
    assert decided.decision == policy_pb2.DECISION_ALLOW, decided
    assertion, _ = await _assertion(stack, "alice")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.ChangePlan(
            billing_pb2.ChangePlanRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                grant_id=decided.grant.grant_id,
                subscription_id=subscription_id,
                target_price_id=quartz,
                idempotency_key="attack-yearly",
            ),
            timeout=10,
        )
    code, reason, _ = testing.error_details(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PRICE_NOT_SWITCHABLE")
    assert await _price_now(stack, subscription_id) == before


async def test_the_edge_offers_the_prices_policy_lists(stack: Stack) -> None:
    quartz = await _plan(stack, "Quartz", 99000, "year")
    starter = stack.summary["products"]["starter"]["prices"]["usd"]
    await _set_bounds(stack, "self-serve-list", self_serve_price_ids=[starter, quartz])
    listed = await stack.turn("alice", "what plans do you have?", conversation="ws")
    assert "Business" not in listed["reply"] and "Quartz" in listed["reply"], listed
    up = await stack.turn("alice", "move me to the next tier up", conversation="ws")
    assert "Quartz" in up["reply"], up
    # A listed price of another interval passes the gateway too: the workspace chose it.
    done = await stack.turn("alice", "yes", conversation="ws")
    assert "now on the Quartz plan" in done["reply"], done
    subscription_id = stack.customer("alice@example.com")["subscription"]
    assert await _price_now(stack, subscription_id) == quartz


def _date_in(zone: str, seconds: int) -> str:
    return formatting.date(datetime.fromtimestamp(seconds, UTC), zone)


async def test_replies_speak_in_the_time_zone_policy_holds(stack: Stack) -> None:
    # UTC+14 and UTC-11 are a day and an hour apart: every moment has another date in each.
    subscription_id = stack.customer("alice@example.com")["subscription"]
    subscription: Any = (
        await stack.stripe.v1.subscriptions.retrieve_async(subscription_id)
    ).to_dict()
    end = int(
        subscription.get("current_period_end")
        or subscription["items"]["data"][0]["current_period_end"]
    )
    for step, zone in enumerate(("Pacific/Kiritimati", "Pacific/Pago_Pago")):
        await _set_bounds(stack, f"zone-{step}", time_zone=zone)
        terms = await stack.policy.GetWorkspaceTerms(
            policy_pb2.GetWorkspaceTermsRequest(workspace_id=WORKSPACE), timeout=5
        )
        assert terms.time_zone == zone
        answer = await stack.turn("alice", "when is my next bill?", conversation=f"tz{step}")
        assert _date_in(zone, end) in answer["reply"], (zone, answer)
