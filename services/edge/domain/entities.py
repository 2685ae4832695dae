"""The objects a customer names in a message: an amount of money and a period of time.

Pure parsing, no billing rule: an amount stays in major units as written until the
currency that gives it minor units is known.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from runtime import currency as currency_units


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9$€£₹¥.,' ]+", " ", text.lower()).strip() + " "


@dataclass(frozen=True)
class Period:
    """A half-open time range [start, end) and how the visitor said it."""

    start: datetime
    end: datetime
    label: str


@dataclass(frozen=True)
class MoneyAmount:
    """An amount the visitor typed or a tool passed, in major units as written (50, 19.50,
    1.234); currency empty when not said. It becomes minor units only where the currency is
    known (the charge's when none was said): ¥50 is 50 minor units, $50 is 5,000."""

    major: Decimal
    currency: str

    def minor_units(self, default_currency: str) -> int | None:
        """The amount in minor units of its currency, or of ``default_currency`` when it names
        none; None when it has more decimals than that currency has (¥50.5, $1.234)."""
        return currency_units.to_minor(self.major, self.currency or default_currency)


# Up to three decimals: the Kuwaiti and Bahraini dinars have thousandths (1.234 KWD).
_AMOUNT = re.compile(
    r"(?P<sym>[$€£₹¥])\s?(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d{1,3})?"
    r"|(?P<num2>\d{1,3}(?:,\d{3})+|\d+)(?P<dec2>\.\d{1,3})?\s?"
    r"(?P<word>dollars?|usd|euros?|eur|pounds?|gbp|rupees?|inr|rs|yen|jpy|won|krw|kwd|bhd"
    r"|omr|jod|tnd)\b",
    re.I,
)
_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "₹": "inr", "¥": "jpy"}
_CURRENCY_WORDS = {
    "dollar": "usd",
    "dollars": "usd",
    "usd": "usd",
    "euro": "eur",
    "euros": "eur",
    "eur": "eur",
    "pound": "gbp",
    "pounds": "gbp",
    "gbp": "gbp",
    "rupee": "inr",
    "rupees": "inr",
    "inr": "inr",
    "rs": "inr",
    "yen": "jpy",
    "jpy": "jpy",
    "won": "krw",
    "krw": "krw",
    "kwd": "kwd",
    "bhd": "bhd",
    "omr": "omr",
    "jod": "jod",
    "tnd": "tnd",
}
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_MONTHS = {name.lower(): index for index, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): index for index, name in enumerate(calendar.month_abbr) if name})


def parse_amount(text: str) -> MoneyAmount | None:
    """The first money amount in the text ("$5,000", "19.50 euros", "¥50"), in major units."""
    match = _AMOUNT.search(text)
    if match is None:
        return None
    if match.group("sym"):
        currency = _SYMBOLS[match.group("sym")]
        whole, decimals = match.group("num"), match.group("dec") or ""
    else:
        currency = _CURRENCY_WORDS[match.group("word").lower()]
        whole, decimals = match.group("num2"), match.group("dec2") or ""
    return MoneyAmount(Decimal(whole.replace(",", "") + decimals), currency)


def _month_start(year: int, month: int, tz: tzinfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def parse_period(text: str, now: datetime) -> Period | None:
    """A period named in the text, relative to ``now`` (aware; its zone is the workspace's):
    "last 3 months", "past two months", "last month", "this month", "this year", "March",
    "March 2026", "last 30 days"."""
    lowered = _words(text)
    tz = now.tzinfo or UTC
    match = re.search(r" (?:last|past|previous) (\d+|[a-z]+) (month|week|day|year)s? ", lowered)
    if match:
        count_word, unit = match.groups()
        count = int(count_word) if count_word.isdigit() else _NUMBER_WORDS.get(count_word, 0)
        if count > 0:
            if unit == "month":
                year, month = _add_months(now.year, now.month, -count)
                day = min(now.day, calendar.monthrange(year, month)[1])
                start = now.replace(year=year, month=month, day=day)
                return Period(start, now + timedelta(seconds=1), f"the last {count} months")
            days = {"day": 1, "week": 7, "year": 365}[unit] * count
            return Period(
                now - timedelta(days=days), now + timedelta(seconds=1), f"the last {count} {unit}s"
            )
    if " last month " in lowered or " previous month " in lowered:
        year, month = _add_months(now.year, now.month, -1)
        start = _month_start(year, month, tz)
        end = _month_start(now.year, now.month, tz)
        return Period(start, end, calendar.month_name[month])
    if " this month " in lowered:
        start = _month_start(now.year, now.month, tz)
        return Period(start, now + timedelta(seconds=1), "this month")
    if " this year " in lowered:
        start = datetime(now.year, 1, 1, tzinfo=tz)
        return Period(start, now + timedelta(seconds=1), "this year")
    if " last year " in lowered:
        return Period(
            datetime(now.year - 1, 1, 1, tzinfo=tz),
            datetime(now.year, 1, 1, tzinfo=tz),
            "last year",
        )
    for token_match in re.finditer(r"(?=( [a-z]+)(?: (\d{4}))? )", lowered):
        name, year_text = token_match.group(1).strip(), token_match.group(2)
        found_month = _MONTHS.get(name)
        if found_month is None:
            continue
        month = found_month
        # "may" and "march" are verbs too: only months when clearly one ("in May", "May 2026",
        # "my March invoice", "March's bill").
        if name in ("may", "march") and not year_text:  # noqa: SIM102
            if not re.search(rf" (in|for|of|from|during|my|last) {name} ", lowered) and not (
                re.search(rf" {name} (s )?(invoice|invoices|bill|bills|receipt|receipts) ", lowered)
            ):
                continue
        year = int(year_text) if year_text else (now.year if month <= now.month else now.year - 1)
        end_year, end_month = _add_months(year, month, 1)
        return Period(
            _month_start(year, month, tz),
            _month_start(end_year, end_month, tz),
            f"{calendar.month_name[month]} {year}" if year_text else calendar.month_name[month],
        )
    return None
