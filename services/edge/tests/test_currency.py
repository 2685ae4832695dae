"""Amounts in the currency's own minor unit everywhere the edge reads or writes money: what the
visitor types, what a tool passes, what the bot says. Yen and won have no minor unit, the
Kuwaiti and Bahraini dinars have thousandths, most others hundredths."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import hypothesis
import pytest
from hypothesis import strategies as st

from edge import tools
from edge.domain import formatting, intents
from runtime import currency

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "places"),
    [
        ("usd", 2),
        ("EUR", 2),
        ("jpy", 0),
        ("KRW", 0),
        ("vnd", 0),
        ("inr", 2),
        ("kwd", 3),
        ("bhd", 3),
        ("omr", 3),
        ("jod", 3),
        ("tnd", 3),
        ("xyz", 2),
    ],
)
def test_the_table_knows_each_currencys_minor_unit(code: str, places: int) -> None:
    assert currency.exponent(code) == places


@pytest.mark.parametrize(
    ("major", "code", "minor"),
    [
        ("19.50", "usd", 1950),
        ("19.5", "eur", 1950),
        ("50", "jpy", 50),
        ("1599", "inr", 159900),
        ("1.234", "kwd", 1234),
        ("0.005", "bhd", 5),
    ],
)
def test_major_and_minor_units_round_trip(major: str, code: str, minor: int) -> None:
    assert currency.to_minor(Decimal(major), code) == minor
    assert currency.to_major(minor, code) == Decimal(major)


@pytest.mark.parametrize(("major", "code"), [("50.5", "jpy"), ("1.234", "usd"), ("1.2345", "kwd")])
def test_an_amount_finer_than_the_currency_has_no_minor_units(major: str, code: str) -> None:
    assert currency.to_minor(Decimal(major), code) is None


@pytest.mark.parametrize(
    ("text", "code", "minor"),
    [
        ("refund ¥50", "jpy", 50),
        ("refund 50 JPY", "jpy", 50),
        ("please refund 5,000 yen", "jpy", 5000),
        ("refund $12.50", "usd", 1250),
        ("refund 12.5 euros", "eur", 1250),
        ("refund ₹1,599", "inr", 159900),
        ("refund 1.234 KWD", "kwd", 1234),
        ("refund 2.5 BHD", "bhd", 2500),
    ],
)
def test_a_typed_amount_becomes_the_minor_units_of_its_currency(
    text: str, code: str, minor: int
) -> None:
    parsed = intents.parse(text, NOW)
    assert parsed.amount is not None
    assert parsed.amount.currency == code
    assert parsed.amount.minor_units(code) == minor


@pytest.mark.parametrize(
    ("amount", "code", "minor"),
    [
        (50, "jpy", 50),
        (50, "usd", 5000),
        (19.99, "eur", 1999),
        (1.234, "kwd", 1234),
        (1599, "inr", 159900),
    ],
)
def test_a_tool_amount_is_in_the_charges_currency(amount: float, code: str, minor: int) -> None:
    # A tool's amount names no currency: it is counted in the unit of the charge it refunds.
    parsed = tools.to_parsed(tools.TOOLS["request_refund"], {"amount": amount}, NOW)
    assert parsed.amount is not None and parsed.amount.currency == ""
    assert parsed.amount.minor_units(code) == minor


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    code=st.sampled_from(["usd", "eur", "jpy", "inr", "kwd", "bhd", "krw"]),
    minor=st.integers(min_value=1, max_value=10**12),
)
def test_what_the_bot_says_reads_back_as_the_same_minor_units(code: str, minor: int) -> None:
    # Any amount the bot shows, typed back by the visitor, is the same amount: display and
    # parsing agree on the currency's unit.
    shown = formatting.money(minor, code)
    parsed = intents.parse(f"refund {shown} please", NOW)
    assert parsed.amount is not None, shown
    assert parsed.amount.currency == code, shown
    assert parsed.amount.minor_units(code) == minor, shown
    assert currency.to_minor(currency.to_major(minor, code), code) == minor


@pytest.mark.parametrize(
    ("minor", "code", "shown"),
    [
        (5000, "jpy", "¥5,000"),
        (4900, "usd", "$49"),
        (1250, "usd", "$12.50"),
        (-300, "eur", "-€3"),
        (159900, "inr", "₹1,599"),
        (1234, "kwd", "1.234 KWD"),
        (1000, "kwd", "1 KWD"),
        (2500, "bhd", "2.500 BHD"),
        (1234567, "krw", "1,234,567 KRW"),
    ],
)
def test_the_bot_says_amounts_in_the_currencys_unit(minor: int, code: str, shown: str) -> None:
    assert formatting.money(minor, code) == shown
