"""End-to-end billing flows through the edge (issue 15, "Flows finished"): pause and resume,
downgrades naming the features lost, plans by alias, UPI's re-subscribe and invoices by
month, with every service and the Stripe emulator running."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from runtime import testing
from tests import system as in_process
from tests.e2e.conftest import WORKSPACE, Stack, eventually


async def _subscription(stack: Stack, email: str) -> dict[str, Any]:
    """The customer's subscription as Stripe holds it."""
    found = await stack.stripe.v1.subscriptions.retrieve_async(
        stack.customer(email)["subscription"]
    )
    subscription: dict[str, Any] = found.to_dict()
    return subscription


async def test_a_paused_subscription_is_resumed_after_the_persons_yes(stack: Stack) -> None:
    not_paused = await stack.turn("alice", "resume my subscription", conversation="pr")
    assert not_paused["intent"] == "resume"
    assert "isn't paused" in not_paused["reply"], not_paused
    pause = await stack.turn("alice", "pause my subscription", conversation="pr")
    assert pause["intent"] == "pause" and pause["actions"], pause
    paused = await stack.turn("alice", "yes", conversation="pr")
    assert "are paused" in paused["reply"], paused
    assert (await _subscription(stack, "alice@example.com"))["pause_collection"]

    offer = await stack.turn("alice", "resume my subscription", conversation="pr")
    assert offer["intent"] == "resume", offer
    assert offer["escalated"] is False, offer
    assert "I can resume it" in offer["reply"] and "Shall I go ahead?" in offer["reply"], offer
    # Nothing changes before the person's "yes".
    assert (await _subscription(stack, "alice@example.com"))["pause_collection"]
    resumed = await stack.turn("alice", "yes", conversation="pr")
    assert "are back on" in resumed["reply"], resumed
    assert not (await _subscription(stack, "alice@example.com"))["pause_collection"]
    # A second "yes" resumes nothing more.
    again = await stack.turn("alice", "yes", conversation="pr")
    assert "nothing waiting" in again["reply"], again
    status = await stack.turn("alice", "what's my subscription status?", conversation="pr")
    assert "paused" not in status["reply"], status


async def test_a_downgrade_names_the_features_lost_before_the_yes(stack: Stack) -> None:
    offer = await stack.turn("alice", "downgrade me to Starter", conversation="down")
    assert offer["intent"] == "change_plan", offer
    assert "less per month" in offer["reply"], offer
    assert "You'd lose" in offer["reply"], offer
    # Growth's marketing features that Starter lacks, from the live catalog.
    for lost in ("Up to 10 seats", "WhatsApp channel", "Priority email support"):
        assert lost in offer["reply"], (lost, offer)
    assert "unlock" not in offer["reply"], offer
    assert offer["actions"], offer
    assert (await _subscription(stack, "alice@example.com"))["items"]["data"][0]["price"][
        "id"
    ] == stack.summary["products"]["growth"]["prices"]["usd"]
    done = await stack.turn("alice", "yes", conversation="down")
    assert "now on the Starter plan" in done["reply"], done
    # An upgrade names no loss.
    upgrade = await stack.turn("alice", "upgrade me to Growth", conversation="down")
    assert "You'd lose" not in upgrade["reply"], upgrade


async def test_a_named_month_picks_that_months_invoice(stack: Stack) -> None:
    zone = ZoneInfo(in_process.WORKSPACE_TIMEZONE)
    invoices = [
        await stack.stripe.v1.invoices.retrieve_async(invoice_id)
        for invoice_id in stack.customer("alice@example.com")["invoices"]
    ]
    assert len(invoices) >= 3, invoices
    chosen = sorted(invoices, key=lambda invoice: invoice["created"])[1]
    month = datetime.fromtimestamp(chosen["created"], zone).strftime("%B")
    answer = await stack.turn("alice", f"send me my {month} invoice", conversation="month")
    assert answer["intent"] == "invoices", answer
    assert f"Here is your invoice for {month}:" in answer["reply"], answer
    links = [action for action in answer["actions"] if action["type"] == "link"]
    assert [link["url"] for link in links] == [chosen["invoice_pdf"]], (links, chosen)
    emailed = await stack.turn("alice", "yes", conversation="month")
    assert f"emailed your invoices for {month}" in emailed["reply"], emailed


async def _plan(stack: Stack, name: str, amount: int, interval: str) -> str:
    """A product with one recurring USD price, added to the live catalog; its price id."""
    product = await stack.stripe.v1.products.create_async(
        {"name": name, "marketing_features": [{"name": f"{name} support"}]}
    )
    price = await stack.stripe.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": interval},
        }
    )
    return str(price.id)


async def test_plans_by_name_and_alias_from_the_offered_catalog(stack: Stack) -> None:
    await _plan(stack, "Basalt", 9900, "month")
    await _plan(stack, "Quartz", 99000, "year")
    # Alice is on Growth ($49/month): the default offer is the monthly USD prices.
    up = await stack.turn("alice", "move me to the next tier up", conversation="al")
    assert up["intent"] == "change_plan", up
    assert "to the Basalt plan ($99/month)" in up["reply"], up
    cheaper = await stack.turn("alice", "switch me to the cheaper one", conversation="al")
    assert "to the Starter plan ($19/month)" in cheaper["reply"], cheaper
    # The alias alone, nothing else said, proposes the same plans.
    alone = await stack.turn("alice", "the cheaper one", conversation="al-alone")
    assert alone["intent"] == "change_plan", alone
    assert "to the Starter plan ($19/month)" in alone["reply"], alone
    alone_up = await stack.turn("alice", "the next tier up", conversation="al-alone")
    assert "to the Basalt plan ($99/month)" in alone_up["reply"], alone_up
    top = await stack.turn("alice", "change to the most expensive plan", conversation="al")
    assert "to the Business plan" in top["reply"], top
    named = await stack.turn("alice", "upgrade to Basalt", conversation="al")
    assert "to the Basalt plan" in named["reply"], named
    # A yearly price is not offered to a monthly subscriber by default.
    yearly = await stack.turn("alice", "upgrade to Quartz", conversation="al")
    assert "don't know a plan called Quartz" in yearly["reply"], yearly
    listed = await stack.turn("alice", "what plans do you have?", conversation="al")
    assert "Basalt" in listed["reply"] and "Quartz" not in listed["reply"], listed


async def test_upi_moves_plan_by_a_checkout_link_and_ends_the_old_plan_once_the_new_is_active(
    stack: Stack,
) -> None:
    old_id = stack.customer("dev@example.in")["subscription"]
    offer = await stack.turn("dev", "switch me to the business plan", conversation="upi")
    assert offer["intent"] == "change_plan", offer
    assert "UPI" in offer["reply"] and "Want me to cancel the current plan?" in offer["reply"]
    assert "Checkout link" in offer["reply"] and offer["actions"], offer
    done = await stack.turn("dev", "yes", conversation="upi")
    links = [action["url"] for action in done["actions"] if action["type"] == "link"]
    assert len(links) == 1 and links[0] in done["reply"], done
    assert "stays as it is until Business is active" in done["reply"], done
    # Nothing ends before the new plan is active.
    assert not (await _subscription(stack, "dev@example.in"))["cancel_at_period_end"]
    again = await stack.turn("dev", "yes", conversation="upi")
    assert "nothing waiting" in again["reply"], again
    # Dev subscribes on the Checkout page, approving a new UPI mandate.
    async with stack.http.post(
        links[0], data={"vpa": "dev@okicici"}, allow_redirects=False
    ) as page:
        assert page.status < 400, await page.text()
    customer_id = stack.customer("dev@example.in")["customer"]
    listed = await stack.stripe.v1.subscriptions.list_async({"customer": customer_id})
    new = [sub for sub in listed.data if sub.id != old_id]
    assert len(new) == 1 and new[0].status == "active", listed
    assert (
        new[0]["items"].data[0].price.id == stack.summary["products"]["business"]["prices"]["inr"]
    )

    async def old_ends_at_period_end() -> bool:
        await stack.flush_webhooks()
        return bool((await _subscription(stack, "dev@example.in"))["cancel_at_period_end"])

    await eventually(old_ends_at_period_end)
    old = await _subscription(stack, "dev@example.in")
    assert old["status"] == "active", old
    # Policy saw a resubscription, not a plan change: its own action, counter and audit.
    audited = await stack.policy.ListAuditEvents(
        policy_pb2.ListAuditEventsRequest(
            workspace_id=WORKSPACE, action=common_pb2.BILLING_ACTION_START_RESUBSCRIPTION
        ),
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    outcomes = [(event.kind, event.outcome) for event in audited.events]
    assert ("decision", "ALLOW:WITHIN_BOUNDS") in outcomes, outcomes
    assert ("grant.committed", "COMMITTED") in outcomes, outcomes
    plan_changes = await stack.policy.ListAuditEvents(
        policy_pb2.ListAuditEventsRequest(
            workspace_id=WORKSPACE, action=common_pb2.BILLING_ACTION_CHANGE_PLAN
        ),
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    assert not plan_changes.events, plan_changes
