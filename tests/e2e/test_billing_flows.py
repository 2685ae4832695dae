"""End-to-end billing flows through the edge (issue 15, "Flows finished"): pause and resume,
downgrades naming the features lost, plans by alias, UPI's re-subscribe and invoices by
month, with every service and the Stripe emulator running."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests import system as in_process
from tests.e2e.conftest import Stack


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
