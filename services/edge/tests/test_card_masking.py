"""Card numbers are masked however they are written (any separators or spacing between digit
groups), and the text around them survives; ordinary numbers are left alone."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from edge.domain import redaction
from runtime import logs

# Characters people (or a paste from a PDF) put between the digit groups of a card.
_SEPARATORS = " .-/_\n\t\r,:;|\u00b7\u2013\u2014*#+~'\"()[]\u00a0\u2009"
# Surrounding text: anything but digits, so that no digit of it can belong to the card.
_SURROUNDING = st.text(
    alphabet=st.characters(
        blacklist_categories=("Nd", "No", "Cs"), blacklist_characters="0123456789"
    ),
    max_size=40,
)


def _check_digit(body: str) -> str:
    """The digit that makes ``body`` followed by it Luhn-valid."""
    for digit in "0123456789":
        if redaction.luhn_valid(body + digit):
            return digit
    raise AssertionError("no Luhn check digit")


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid 13-19 digit card number."""
    length = draw(st.integers(min_value=13, max_value=19))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    return body + _check_digit(body)


@st.composite
def written_cards(draw: st.DrawFn) -> tuple[str, str]:
    """A card number and the way someone wrote it: split into groups of any size, joined by
    runs of one to three separator characters (any mix)."""
    digits = draw(card_numbers())
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=len(digits) - 1))))
    groups = [
        digits[start:end] for start, end in zip([0, *cuts], [*cuts, len(digits)], strict=True)
    ]
    written = groups[0]
    for group in groups[1:]:
        written += draw(st.text(alphabet=_SEPARATORS, min_size=1, max_size=3)) + group
    return digits, written


def _check_not_leaked(digits: str, masked: str) -> None:
    remaining = "".join(char for char in masked if char.isdigit())
    assert digits not in remaining
    # No six consecutive digits of the card survive (a masked card keeps none of its digits).
    for start in range(len(digits) - 5):
        assert digits[start : start + 6] not in remaining


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(card=written_cards(), before=_SURROUNDING, after=_SURROUNDING)
def test_a_card_written_with_any_separators_is_masked_and_the_text_around_survives(
    card: tuple[str, str], before: str, after: str
) -> None:
    digits, written = card
    text = f"{before} {written} {after}"
    masked = redaction.redact_cards(text)
    _check_not_leaked(digits, masked)
    assert masked == f"{before} {redaction.CARD_MASK} {after}"
    assert redaction.contains_card(text)
    _check_not_leaked(digits, logs.redact(text))


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(card=written_cards(), order=st.integers(min_value=1, max_value=999))
def test_a_card_after_other_digits_is_still_masked_whole(card: tuple[str, str], order: int) -> None:
    digits, written = card
    masked = redaction.redact_cards(f"order {order}, card {written}")
    _check_not_leaked(digits, masked)
    assert masked.startswith("order ")


@pytest.mark.parametrize(
    "written",
    [
        "4242.4242.4242.4242",
        "4242/4242/4242/4242",
        "4242_4242_4242_4242",
        "4242  4242 4242 4242",
        "4242\n4242\n4242\n4242",
        "4242 - 4242.4242/4242",
        "3782 822463 10005",
    ],
)
def test_the_reported_spellings_are_masked(written: str) -> None:
    assert redaction.redact_cards(f"my card is {written} thanks") == (
        f"my card is {redaction.CARD_MASK} thanks"
    )
    assert "4242" not in logs.redact(f"card {written}") or "4242" not in written


@pytest.mark.parametrize(
    "text",
    [
        "I was charged $1,234.56 on 2026-05-28 at 12:30",
        "refund 1,234.56 EUR from 05/28/2026",
        "call me at +1 (555) 123-4567 or 555.123.4567",
        "order ch_3MqLiJLkdIwHu7ix0snN0B15 and in_1234567890123",
        "ids 1234567890123 and 12345678901234567890",
        "between 2026-05-01 and 2026-05-31",
    ],
)
def test_ordinary_numbers_are_not_masked(text: str) -> None:
    assert redaction.redact_cards(text) == text
