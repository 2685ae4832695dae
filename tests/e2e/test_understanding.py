"""Everyday phrasings issue 15 found misread, through the edge with every service and the
Stripe emulator running: each reaches its flow."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack, eventually


async def test_misread_phrases_reach_their_flows(stack: Stack) -> None:
    refunds_before = await stack.refunds()
    # An amount inside the sentence no longer hides the duplicate; "yep, go ahead" confirms.
    duplicate = await stack.turn("bob", "I was charged $49 twice", conversation="dup")
    assert duplicate["intent"] == "duplicate_charge", duplicate
    assert "twice" in duplicate["reply"] and "$19" in duplicate["reply"]
    refunded = await stack.turn("bob", "yep, go ahead", conversation="dup")
    assert "refunded $19" in refunded["reply"], refunded
    new = [refund for refund in await stack.refunds() if refund not in refunds_before]
    assert [refund["amount"] for refund in new] == [1900], new

    # A plan change is started, not the current plan shown.
    change = await stack.turn("alice", "I want to change my plan", conversation="change")
    assert change["intent"] == "change_plan", change
    assert "Which plan would you like" in change["reply"], change

    # Closing the account (typed with typos too) is a cancellation; "nope" declines it.
    for text in ("close my account", "cancle my subscripton"):
        close = await stack.turn("alice", text, conversation="close")
        assert close["intent"] == "cancel", close
        assert "I can cancel your Growth subscription" in close["reply"], close
    declined = await stack.turn("alice", "nope", conversation="close")
    assert "I won't do that" in declined["reply"], declined
    subscription = await stack.stripe.v1.subscriptions.retrieve_async(
        stack.customer("alice@example.com")["subscription"]
    )
    assert subscription["status"] == "active" and not subscription["cancel_at_period_end"]

    # Not wanting a refund proposes none.
    no_refund = await stack.turn("alice", "I do not want a refund", conversation="norefund")
    assert no_refund["intent"] == "no", no_refund
    assert "refund" not in no_refund["reply"].lower(), no_refund
    assert not any(action["type"] == "confirm" for action in no_refund["actions"]), no_refund

    # Resuming an active subscription is answered, not the status.
    resume = await stack.turn("alice", "resume my subscription", conversation="resume")
    assert resume["intent"] == "resume", resume
    assert "isn't paused" in resume["reply"], resume

    # HELP is a hand-off, not a greeting.
    helped = await stack.turn("alice", "HELP", conversation="help")
    assert helped["intent"] == "human" and helped["escalated"] is True, helped


async def test_send_me_invoices_shows_the_links_and_offers_the_bundle(stack: Stack) -> None:
    before = len(await stack.emails("alice@example.com"))
    answer = await stack.turn(
        "alice", "Can you send me invoices for the last 3 months?", conversation="send"
    )
    assert answer["intent"] == "invoices", answer
    links = [action for action in answer["actions"] if action["type"] == "link"]
    assert links and all(link["url"].startswith("http") for link in links)
    assert "Want me to email them to you as one bundle?" in answer["reply"]
    assert len(await stack.emails("alice@example.com")) == before
    emailed = await stack.turn("alice", "yes", conversation="send")
    assert "emailed your invoices" in emailed["reply"], emailed

    async def bundle() -> list[dict[str, Any]]:
        return (await stack.emails("alice@example.com"))[before:]

    mails = await eventually(bundle)
    assert len(mails) == 1 and mails[0]["attachments"], mails


async def test_a_declined_card_offers_retry_a_new_card_or_a_person(stack: Stack) -> None:
    answer = await stack.turn("carol", "my card was declined", conversation="declined")
    assert answer["intent"] == "payment_failed", answer
    assert "is unpaid" in answer["reply"], answer
    labels = {action["label"] for action in answer["actions"]}
    assert {"Retry payment", "Update card", "Talk to a human"} <= labels
    paid = await stack.turn("alice", "my payment failed", conversation="paid")
    assert paid["intent"] == "payment_failed"
    assert "I don't see a failed payment" in paid["reply"], paid


async def test_a_plan_named_only_in_the_live_catalog_can_be_chosen(stack: Stack) -> None:
    product = await stack.stripe.v1.products.create_async({"name": "Basalt"})
    await stack.stripe.v1.prices.create_async(
        {
            "product": str(product["id"]),
            "currency": "usd",
            "unit_amount": 9900,
            "recurring": {"interval": "month"},
        }
    )
    upgrade = await stack.turn("bob", "upgrade to Basalt", conversation="basalt")
    assert upgrade["intent"] == "change_plan", upgrade
    assert "Basalt" in upgrade["reply"] and "more per month" in upgrade["reply"], upgrade
    assert any(action["type"] == "confirm" for action in upgrade["actions"]), upgrade
    # A typo of a catalog name finds it too; a name not sold is said to be unknown.
    typo = await stack.turn("bob", "switch me to Basallt", conversation="typo")
    assert "Basalt" in typo["reply"] and "more per month" in typo["reply"], typo
    unknown = await stack.turn("bob", "upgrade to Obsidian", conversation="unknown")
    assert "I don't know a plan called Obsidian" in unknown["reply"], unknown


async def test_two_actions_at_once_are_asked_about(stack: Stack) -> None:
    answer = await stack.turn("alice", "I want to cancel and get a refund", conversation="both")
    assert answer["intent"] == "clarify", answer
    assert "Just to be sure" in answer["reply"], answer
    texts = {action.get("text") for action in answer["actions"]}
    assert {"cancel my subscription", "refund my last charge"} <= texts
    chosen = await stack.turn("alice", "cancel my subscription", conversation="both")
    assert chosen["intent"] == "cancel", chosen
