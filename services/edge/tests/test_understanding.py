"""Unit tests of understanding without a model: the phrasings issue 15 found misread, typo
correction that leaves real words alone, negation, amounts inside sentences, clarifying
questions, and plan names taken from the live catalog rather than a fixed list."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from edge.domain import intents, plan_choice, spelling
from edge.domain.intents import Intent
from edge.domain.plan_choice import PlanNames

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("my card was declined", Intent.PAYMENT_FAILED),
        ("my payment failed", Intent.PAYMENT_FAILED),
        ("is there a cheaper option", Intent.LIST_PLANS),
        ("I was charged $49 twice", Intent.DUPLICATE_CHARGE),
        ("talk to support", Intent.HUMAN),
        ("human please", Intent.HUMAN),
        ("yep, go ahead", Intent.YES),
        ("cancle my subscripton", Intent.CANCEL),
        ("refnd", Intent.REFUND),
        ("invoces", Intent.INVOICES),
        ("I want to change my plan", Intent.CHANGE_PLAN),
        ("close my account", Intent.CANCEL),
        ("resume my subscription", Intent.RESUME),
        ("HELP", Intent.HUMAN),
        ("I do not want a refund", Intent.NO),
        ("Can you send me invoices for the last 3 months?", Intent.INVOICES),
        ("upgrade to Basalt", Intent.CHANGE_PLAN),
        ("nope", Intent.NO),
        # A plan named only by its place, nothing else said: a choice, not the price list.
        ("the cheaper one", Intent.CHANGE_PLAN),
        ("the next tier up", Intent.CHANGE_PLAN),
        ("I'll take the cheaper one", Intent.CHANGE_PLAN),
        ("cheaper", Intent.LIST_PLANS),
    ],
)
def test_the_phrases_issue_15_found_misread(text: str, intent: Intent) -> None:
    assert intents.parse(text, NOW).intent is intent


def test_amounts_inside_sentences_are_kept() -> None:
    parsed = intents.parse("I was charged $49 twice", NOW)
    assert parsed.amount == intents.MoneyAmount(Decimal("49"), "usd")
    refund = intents.parse("could you refund 12.50 euros of that charge", NOW)
    assert refund.intent is Intent.REFUND
    assert refund.amount == intents.MoneyAmount(Decimal("12.50"), "eur")
    assert not refund.last_charge


def test_typos_are_corrected_but_real_words_are_not() -> None:
    assert spelling.tokens("cancle my subscripton") == ["cancel", "my", "subscription"]
    assert spelling.tokens("refnd the invoces") == ["refund", "the", "invoices"]
    # Words one edit from a billing word that mean something else stay as they are.
    assert spelling.tokens("change it because of the cause") == [
        "change",
        "it",
        "because",
        "of",
        "the",
        "cause",
    ]
    # Nor do words a first letter or two edits away from one (found in our own docs).
    for word in ("killed", "building", "successful", "remaining", "deadline", "operation"):
        assert spelling.correct(word) == word, word
    assert intents.parse("change my plan", NOW).intent is Intent.CHANGE_PLAN
    assert spelling.tokens("I don't want it") == ["i", "do", "not", "want", "it"]


def test_negation_drops_the_action_negated_only() -> None:
    assert intents.parse("no refund please", NOW).intent is Intent.NO
    assert intents.parse("I don't want to change my plan", NOW).intent is Intent.NO
    # A "no" that goes on to ask for something is that something.
    assert intents.parse("No, I want a refund", NOW).intent is Intent.REFUND
    assert intents.parse("I haven't received my refund", NOW).intent is Intent.REFUND
    assert intents.parse("I did not get my refund", NOW).intent is Intent.REFUND
    assert intents.parse("I would not like to change my plan", NOW).intent is Intent.NO
    # "Don't cancel" still undoes a cancellation, as before.
    assert intents.parse("please don't cancel my subscription", NOW).intent is Intent.UNDO
    assert intents.parse("can I pause instead of cancelling?", NOW).intent is Intent.PAUSE


def test_two_actions_at_once_ask_which_one() -> None:
    parsed = intents.parse("I want to cancel and get a refund", NOW)
    assert parsed.intent is Intent.CLARIFY
    assert set(parsed.alternatives) == {Intent.CANCEL, Intent.REFUND}
    # A read beside an action is not a tie: the action is what was asked.
    assert intents.parse("cancel my plan", NOW).intent is Intent.CANCEL
    # Asking for a person outranks everything else said.
    assert intents.parse("let me talk to a human about a refund", NOW).intent is Intent.HUMAN


def test_yes_and_no_variants() -> None:
    for text in ("yep, go ahead", "Sure thing!", "ok do it", "yesss", "Yeah that's fine"):
        assert intents.parse(text, NOW).intent is Intent.YES, text
    for text in ("nope", "nah I'm good", "no thanks", "not now", "cancel that"):
        assert intents.parse(text, NOW).intent is Intent.NO, text
    # Neither a thank-you nor a goodbye confirms anything.
    for text in ("thanks", "ok thanks bye"):
        assert intents.parse(text, NOW).intent is Intent.FALLBACK, text


def test_the_plan_asked_for_is_whatever_the_visitor_names() -> None:
    assert intents.parse("upgrade to Basalt", NOW).plan == "basalt"
    assert intents.parse("move me to the Pro plan", NOW).plan == "pro"
    assert intents.parse("I want to change my plan", NOW).plan == ""
    assert intents.parse("I need a bigger plan", NOW).direction == "upgrade"
    # Names the caller knows from its catalog come first.
    parsed = intents.parse("switch from Basalt to Team Plus", NOW, ("Basalt", "Team Plus"))
    assert parsed.intent is Intent.CHANGE_PLAN and parsed.plan == "team plus"


CATALOG = (
    PlanNames("Basalt", "basalt", "price_basalt"),
    PlanNames("Granite", "", "price_granite"),
    PlanNames("Team Plus", "team_plus", "price_team_plus"),
)


def test_plans_are_chosen_from_the_live_catalog() -> None:
    assert plan_choice.choose("basalt", "upgrade to Basalt", CATALOG) == 0
    assert plan_choice.choose("price_granite", "", CATALOG) == 1
    # A multi-word name the parser saw one word of.
    assert plan_choice.choose("team", "switch from Basalt to Team Plus", CATALOG) == 2
    # A typo of a catalog name.
    assert plan_choice.choose("granit", "move to granit", CATALOG) == 1
    # No plan said: none chosen; a plan not sold: none chosen.
    assert plan_choice.choose("", "I want to change my plan", CATALOG) is None
    assert plan_choice.choose("growth", "upgrade to growth", CATALOG) is None
