"""Policy's answers as the visitor meets them: ESCALATE (over the cap, outside the window)
becomes a hand-off with the full context; DENY is explained with its numbers; nothing changes
without a "yes" to the newest proposal, in the same conversation, before it expires; an undo
after the grace is too late."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import jwt
from google.protobuf import duration_pb2

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from runtime import testing
from tests.e2e.conftest import (
    AGENT_INBOX,
    TOKEN_SECRET,
    WORKSPACE,
    Stack,
    eventually,
    user_hash,
)


async def _set_bounds(stack: Stack, key: str, **changes: Any) -> None:
    """Applies a bounds change; a loosening is approved by a second admin."""
    current = await stack.policy.GetBounds(
        policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=5
    )
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.bounds)
    for name, value in changes.items():
        if isinstance(value, list):
            del getattr(bounds, name)[:]
            getattr(bounds, name).extend(value)
        elif hasattr(value, "DESCRIPTOR"):
            getattr(bounds, name).CopyFrom(value)
        else:
            setattr(bounds, name, value)
    proposed = await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key=f"{key}-propose"
        ),
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
        await stack.policy.ApproveBoundsChange(
            policy_pb2.ApproveBoundsChangeRequest(
                workspace_id=WORKSPACE,
                change_id=proposed.change.change_id,
                idempotency_key=f"{key}-approve",
            ),
            metadata=testing.admin_metadata("admin-second"),
            timeout=5,
        )


async def _price_of(stack: Stack, email: str) -> str:
    subscription = await stack.stripe.v1.subscriptions.retrieve_async(
        stack.customer(email)["subscription"]
    )
    return str(subscription["items"]["data"][0]["price"]["id"])


async def test_refund_over_the_cap_hands_off_with_the_full_context(stack: Stack) -> None:
    await _set_bounds(
        stack,
        "cap",
        refund_caps=[common_pb2.Money(amount_minor=2000, currency="usd")],
    )
    # Already over the cap: policy escalates at once, nothing is offered for a "yes".
    answer = await stack.turn("alice", "please refund my last charge", conversation="cap")
    assert answer["escalated"] is True, answer
    assert "Shall I go ahead?" not in answer["reply"], answer
    assert answer["reply"].startswith("I can't refund $49 on my own"), answer
    assert "automatic refunds are limited to $20 per period" in answer["reply"], answer
    escalation_id = answer["escalation_id"]
    escalation = next(e for e in await stack.escalations() if e.escalation_id == escalation_id)
    assert escalation.reason == "REFUND_OVER_CAP"
    assert escalation.action == common_pb2.BILLING_ACTION_REFUND
    assert escalation.details.amount.amount_minor == 4900
    assert "refund my last charge" in escalation.context.transcript_summary
    assert "Growth" in escalation.context.subscription_summary
    assert "refund $49" in escalation.context.note

    async def handoff_mail() -> list[dict[str, Any]]:
        return [m for m in await stack.emails(AGENT_INBOX) if escalation_id in str(m)]

    mails = await eventually(handoff_mail)
    mail = str(mails[0])
    assert "REFUND_OVER_CAP" in mail
    assert "refund my last charge" in mail  # the transcript
    # The subscription summary: from the contact's tags, the turn read no subscription.
    assert "Growth tier, active (the contact's tags), customer cus_" in mail
    assert "refund $49" in mail  # the requested action
    assert await stack.refunds() == []


async def test_refund_outside_the_window_escalates_and_moves_no_money(stack: Stack) -> None:
    oldest = stack.customer("alice@example.com")["charges"][0]
    asked = await stack.turn("alice", f"refund {oldest}", conversation="window")
    assert asked["escalated"] is True
    assert "14-day refund window" in asked["reply"]
    escalation = next(
        e for e in await stack.escalations() if e.escalation_id == asked["escalation_id"]
    )
    assert escalation.reason == "REFUND_OUTSIDE_WINDOW"
    assert escalation.details.charge_id == oldest
    again = await stack.turn("alice", "yes", conversation="window")
    assert "refunded" not in again["reply"]
    assert await stack.refunds() == []


async def test_plan_change_happens_only_on_yes_in_the_same_live_conversation(
    stack: Stack, database_url: str
) -> None:
    starter = await _price_of(stack, "bob@example.com")
    proposal = await stack.turn("bob", "switch me to the growth plan", conversation="pc-a")
    assert any(action["type"] == "confirm" for action in proposal["actions"]), proposal
    unrelated = await stack.turn("bob", "what plan am I on?", conversation="pc-a")
    assert "Starter plan" in unrelated["reply"]
    elsewhere = await stack.turn("bob", "yes", conversation="pc-b")
    assert "nothing waiting" in elsewhere["reply"], elsewhere
    # Another visitor cannot even write into bob's conversation.
    status, other_visitor = await stack.post_turn(
        {"user_id": "alice", "user_hash": user_hash("alice")}, "yes", conversation="pc-a"
    )
    assert status == 403, other_visitor
    assert await _price_of(stack, "bob@example.com") == starter
    connection = await asyncpg.connect(database_url)
    try:
        expired = await connection.execute(
            "UPDATE edge.proposals SET expires_at = now() - interval '1 second'"
            " WHERE workspace_id = $1 AND conversation_id = $2",
            WORKSPACE,
            "pc-a",
        )
    finally:
        await connection.close()
    assert expired == "UPDATE 1"
    late = await stack.turn("bob", "yes", conversation="pc-a")
    assert "expired" in late["reply"], late
    assert await _price_of(stack, "bob@example.com") == starter
    declined = await stack.turn("bob", "switch me to the growth plan", conversation="pc-a")
    assert declined["intent"] == "change_plan"
    no = await stack.turn("bob", "no", conversation="pc-a")
    assert "won't do that" in no["reply"]
    after_no = await stack.turn("bob", "yes", conversation="pc-a")
    assert "nothing waiting" in after_no["reply"]
    assert await _price_of(stack, "bob@example.com") == starter


async def test_plan_change_limit_is_explained_with_its_numbers(stack: Stack) -> None:
    await _set_bounds(stack, "limit", plan_changes_per_period=3)
    targets = ["growth", "starter", "growth"]
    for index, target in enumerate(targets):
        await stack.turn("bob", f"switch me to the {target} plan", conversation="lim")
        done = await stack.turn("bob", "yes", conversation="lim")
        assert "Done: you're now on the" in done["reply"], (index, done)
    # All three used: the fourth is refused at once, with its numbers, and nothing is offered.
    denied = await stack.turn("bob", "switch me to the starter plan", conversation="lim")
    assert "Shall I go ahead?" not in denied["reply"], denied
    assert denied["reply"].startswith(
        "I can't change to Starter: you've used 3 of 3 plan changes this month; "
        "the next is possible on "
    ), denied
    assert denied["escalated"] is False
    assert (
        await _price_of(stack, "bob@example.com")
        == stack.summary["products"]["growth"]["prices"]["usd"]
    )

    # One confirmation email per change that happened, naming the plan before and after.
    async def confirmations() -> list[dict[str, Any]]:
        mails = [
            mail
            for mail in await stack.emails("bob@example.com")
            if mail["subject"].startswith("Your plan is now ")
        ]
        return mails if len(mails) >= len(targets) else []

    mails = await eventually(confirmations)
    assert sorted(mail["subject"].split(" (")[0] for mail in mails) == [
        "Your plan is now Growth",
        "Your plan is now Growth",
        "Your plan is now Starter",
    ], mails
    assert all("Previous plan: " in mail["text"] for mail in mails), mails


async def test_undo_after_the_grace_is_too_late_and_offboarding_is_sent(stack: Stack) -> None:
    await _set_bounds(stack, "grace", cancellation_grace=duration_pb2.Duration(seconds=1))
    await stack.turn("alice", "cancel my subscription", conversation="late")
    scheduled = await stack.turn("alice", "yes", conversation="late")
    assert "will be canceled" in scheduled["reply"], scheduled
    subscription_id = stack.customer("alice@example.com")["subscription"]

    async def canceled() -> bool:
        subscription = await stack.stripe.v1.subscriptions.retrieve_async(subscription_id)
        return bool(subscription["status"] == "canceled")

    await eventually(canceled, timeout=15)
    undo = await stack.turn("alice", "undo", conversation="late")
    assert "canceled" in undo["reply"] and "subscribe again" in undo["reply"], undo
    assert "undone" not in undo["reply"].replace("nothing to undo", "")
    await stack.flush_webhooks()

    async def scheduled_and_offboarding() -> list[dict[str, Any]]:
        mails = await stack.emails("alice@example.com")
        return mails if len(mails) >= 2 else []

    mails = await eventually(scheduled_and_offboarding)
    subjects = sorted(mail["subject"] for mail in mails)
    assert len(subjects) == 2, subjects
    assert subjects[0] == "Your subscription has ended", subjects
    assert subjects[1].startswith("Your subscription will end on "), subjects


async def test_contacts_of_one_customer_share_its_refund_cap(stack: Stack) -> None:
    # Three people of one Stripe customer (alice's by user_hash, two colleagues whose signed
    # tokens name the customer) each ask for $15 of her last $49 charge under a $40 cap: the
    # customer's bound holds across them, and the third is handed to a human.
    await _set_bounds(
        stack, "shared-cap", refund_caps=[common_pb2.Money(amount_minor=4000, currency="usd")]
    )
    customer = stack.customer("alice@example.com")["customer"]
    charges = stack.customer("alice@example.com")["charges"]
    now = int(time.time())

    def colleague(name: str) -> dict[str, str]:
        claims = {"sub": name, "iat": now, "exp": now + 600, "stripe_customer_id": customer}
        token = jwt.encode(claims, TOKEN_SECRET, algorithm="HS256", headers={"kid": "t1"})
        return {"token": token}

    people = [{"user_id": "alice", "user_hash": user_hash("alice")}]
    people += [colleague("alice-colleague-1"), colleague("alice-colleague-2")]
    answers = []
    for index, person in enumerate(people):
        conversation = f"shared-cap-{index}"
        text = f"please refund $15 of {charges[-1]}"
        status, asked = await stack.post_turn(person, text, conversation)
        assert status == 200, asked
        if "Shall I go ahead?" in asked["reply"]:
            status, asked = await stack.post_turn(person, "yes", conversation)
        answers.append(asked)
    assert "refunded $15" in answers[0]["reply"], answers[0]
    assert "refunded $15" in answers[1]["reply"], answers[1]
    assert answers[2]["escalated"] is True, answers[2]
    assert "refunded" not in answers[2]["reply"], answers[2]
    refunds = await stack.refunds()
    assert sorted(int(r["amount"]) for r in refunds) == [1500, 1500], refunds
    escalation = next(
        e for e in await stack.escalations() if e.escalation_id == answers[2]["escalation_id"]
    )
    assert escalation.reason == "REFUND_OVER_CAP"
    assert "for your billing account" in answers[2]["reply"], answers[2]
