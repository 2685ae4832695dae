"""A model's reply is checked against the turn's tool results: amounts, dates, durations,
links and policy terms must appear there, and no money action may be told as done."""

from __future__ import annotations

import json

import pytest

from edge.domain import grounding
from edge.llm_client import parse_completion

STATUS = json.dumps(
    {
        "status": "ok",
        "message": "You're on Growth at $49/month, renewing on December 28, 2026. Your last "
        "invoice was paid on November 28, 2026.",
        "data": {"subscription": {"amount_minor": 4900, "current_period_end": "2026-12-28"}},
    }
)
QUOTE = json.dumps(
    {
        "status": "needs_confirmation",
        "message": "Your charge on Nov 28, 2026 was $49 (Visa ending 4242). I can refund $49. "
        "Shall I go ahead?",
        "data": {"quote": {"amount_minor": 4900, "expires_at": "2026-11-30T07:10:00+00:00"}},
    }
)


def kinds(reply: str, *results: str) -> list[str]:
    return [f.kind for f in grounding.findings(reply, grounding.Evidence.of(results))]


@pytest.mark.parametrize(
    "reply",
    [
        "You're on Growth: $49 a month, next billed on Dec 28, 2026.",
        "Your plan renews on 28 December 2026 at $49.00.",
        "Your plan renews 2026-12-28; the last invoice was paid November 28.",
        "You pay 49 USD per month.",
        "You pay 49 a month, for 3 seats.",
        "Your Visa ending 4242 was charged $49.",
        "I can refund $49 to your Visa ending 4242. Reply yes to confirm.",
    ],
)
def test_what_the_tools_said_goes_out(reply: str) -> None:
    assert kinds(reply, STATUS, QUOTE) == []


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("You're on Growth at $59 a month.", "amount"),
        ("You're on Growth at 59.00 a month.", "amount"),
        ("You'll get 20% back.", "amount"),
        ("Your plan renews on Dec 29, 2026.", "date"),
        ("Your plan renews on 12/29/2026.", "date"),
        ("Your plan renews in January 2027.", "date"),
        ("Refunds are possible within 30 days of a charge.", "duration"),
        ("You pay 59 a month.", "number"),
        ("Your card will be charged again tomorrow.", "date"),
        ("It renews next Monday.", "date"),
        ("Our refund policy allows refunds of any charge.", "policy"),
        ("We offer a money-back guarantee.", "policy"),
        ("Annual plans are non-refundable.", "policy"),
        ("Update your card at https://evil.example/pay", "link"),
        ("I've refunded you $49.", "done_claim"),
        ("Your refund has been processed.", "done_claim"),
        ("Your subscription has been cancelled.", "done_claim"),
        ("I went ahead and changed your plan.", "done_claim"),
        ("I have confirmed the refund for you.", "done_claim"),
    ],
)
def test_what_no_tool_said_is_found(reply: str, kind: str) -> None:
    assert kind in kinds(reply, STATUS, QUOTE)


def test_with_no_tool_results_every_amount_is_ungrounded() -> None:
    assert kinds("The Growth plan costs $49.") == ["amount"]
    assert kinds("Hello! How can I help with your billing?") == []


def test_a_policy_term_a_tool_returned_may_be_repeated() -> None:
    refusal = json.dumps({"message": "That's outside the refund window of 30 days."})
    assert kinds("That charge is outside the refund window of 30 days.", refusal) == []


def test_a_completion_with_arguments_that_are_not_an_object_keeps_the_call() -> None:
    # The call is kept (and refused by the turn), not dropped: a model that sends garbage
    # does not get its words through unchecked.
    said = parse_completion(
        {
            "choices": [
                {
                    "message": {
                        "content": None,
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "request_refund", "arguments": "{"}},
                            {"id": "c2", "function": {"name": "list_plans", "arguments": "[]"}},
                        ],
                    }
                }
            ]
        }
    )
    assert [(c.name, c.arguments) for c in said.tool_calls] == [
        ("request_refund", None),
        ("list_plans", None),
    ]


def test_digits_inside_ids_and_hashes_are_no_evidence() -> None:
    result = json.dumps({"data": {"quote": {"quote_id": "prop_38ab", "terms_hash": "9f38c27"}}})
    assert kinds("That will be $38.", result) == ["amount"]
    assert kinds("That will be $27.", result) == ["amount"]
