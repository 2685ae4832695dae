"""Whether a language model's reply says only what the turn's tool results said.

A model's words reach the person only when every amount, date, duration, link and policy term
in them appears in what the tools returned in that turn, and when they claim no money action
as done (in a model's turn tools only quote; the person's own "yes" runs the action, in a
later turn the rules answer). Anything else is a finding, and the caller replaces the reply.
Pure functions on text: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATE_PATTERNS = (
    # "May 28, 2026", "May 28th", "Sept. 3 2026"
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?:,?\s+{_YEAR}\b)?", re.IGNORECASE),
    # "28 May 2026", "3rd of June"
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b(?:,?\s+{_YEAR}\b)?", re.IGNORECASE),
    # "2026-05-28" (also inside ISO timestamps)
    re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"),
    # "05/28/2026"
    re.compile(r"\b(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})\b"),
)
# "May 2026": a month named with its year but no day.
_MONTH_YEAR = re.compile(rf"\b{_MONTH}\s+{_YEAR}\b", re.IGNORECASE)

_CURRENCY_WORDS = (
    r"usd|eur|gbp|jpy|inr|cad|aud|chf|sek|nok|dkk|nzd|sgd|hkd|mxn|brl|kwd|"
    r"dollars?|euros?|pounds?|yen|rupees?"
)
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_AMOUNT_PATTERNS = (
    # "$49", "CA$12.50", "€ 5", "USD 49"
    re.compile(rf"(?:[$€£¥₹]|\b(?:{_CURRENCY_WORDS})\s?)\s?(?P<n>{_NUMBER})", re.IGNORECASE),
    # "49 USD", "12.50 euros"
    re.compile(rf"(?P<n>{_NUMBER})\s?(?:{_CURRENCY_WORDS})\b", re.IGNORECASE),
    # "50%", "50 percent"
    re.compile(rf"(?P<n>{_NUMBER})\s?(?:%|percent\b)", re.IGNORECASE),
    # "49.00": a number with cents is an amount even without a currency
    re.compile(r"(?<![\d.])(?P<n>\d[\d,]*\.\d{2})(?![\d.])"),
)
# A number standing on its own: not a run of digits inside an id or a hash ("ch_3Px9", "9f38").
_ANY_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d[\d,]*(?:\.\d+)?(?![A-Za-z0-9_])")
_WORD_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "ten": 10,
    "fourteen": 14,
    "fifteen": 15,
    "thirty": 30,
    "sixty": 60,
    "ninety": 90,
}
# "30 days", "14-day", "two weeks", "24 hours": how long a window, grace or delay is.
_DURATION = re.compile(
    r"\b(?P<n>\d+|" + "|".join(_WORD_NUMBERS) + r")[\s-]+(?:business\s+|calendar\s+|working\s+)?"
    r"(?P<unit>hour|day|week|month|year)s?\b",
    re.IGNORECASE,
)
# Days named without a date: a date all the same, which the tool results must say in words.
_RELATIVE_DAY = re.compile(
    r"\b(?:tomorrow|yesterday|tonight|monday|tuesday|wednesday|thursday|friday|saturday|"
    r"sunday|next\s+(?:week|month|year)|last\s+(?:week|month|year)|end\s+of\s+(?:the|this)\s+"
    r"(?:week|month|year))\b",
    re.IGNORECASE,
)
# Any other number of two digits or more (an amount without its currency, "49 a month"); a
# single digit is a count ("3 invoices") and may be the model's own.
_BARE_NUMBER = re.compile(r"(?<![\w.,])(?:\d{2,}[\d,]*(?:\.\d+)?|\d\.\d+)(?![\w])")
_URL = re.compile(r"https?://[^\s<>()\"']+", re.IGNORECASE)
# Words that state a rule of the business: the model may repeat them only from a tool result.
_POLICY_TERMS = (
    "policy",
    "policies",
    "refund window",
    "money-back",
    "money back",
    "guarantee",
    "non-refundable",
    "nonrefundable",
    "no refunds",
    "not refundable",
    "eligible",
    "eligibility",
    "prorated refund",
    "pro-rated refund",
    "partial refund",
    "full refund",
    "refund cap",
    "refund limit",
    "maximum refund",
    "grace period",
    "free of charge",
    "no charge",
    "waive",
    "store credit",
    "account credit",
)
# A money action told as done. In a model's turn no tool moves money (they quote), so these
# are never true there: only the person's own "yes" runs an action.
_DONE_CLAIMS = (
    re.compile(
        r"\b(?:i|we)(?:'ve|\s+have|\s+just|\s+went\s+ahead\s+and|\s+already)?\s+"
        r"(?:already\s+)?(?:refunded|issued|processed|cancell?ed|changed|switched|upgraded|"
        r"downgraded|paused|retried|charged|confirmed|credited|reversed|moved|approved)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:has|have|was|were|is|are)\s+(?:now\s+|already\s+|just\s+|successfully\s+)*"
        r"(?:been\s+)?(?:refunded|issued|processed|cancell?ed|changed|switched|upgraded|"
        r"downgraded|paused|retried|credited|reversed|approved|confirmed)\b",
        re.IGNORECASE,
    ),
    re.compile(r"\brefund\s+(?:is|was)\s+on\s+(?:its|the)\s+way\b", re.IGNORECASE),
)


@dataclass(frozen=True)
class Finding:
    """One thing the reply says that no tool result backs: what kind, and the words."""

    kind: str  # "amount", "number", "date", "duration", "link", "policy", "done_claim"
    words: str


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "")).normalize()
    except InvalidOperation:
        return None


def _month(value: str) -> int:
    return int(value) if value.isdigit() else _MONTHS[value.lower().rstrip(".")]


def _dates(text: str) -> list[tuple[tuple[int, int, int | None], str]]:
    """(month, day, year or None) and the words, for every date written in the text."""
    found = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            try:
                month, day = _month(match["month"]), int(match["day"])
            except (KeyError, ValueError):
                continue
            if 1 <= month <= 12 and 1 <= day <= 31:
                year = int(match["year"]) if match["year"] else None
                found.append(((month, day, year), match.group(0)))
    return found


def _durations(text: str) -> list[tuple[tuple[int, str], str]]:
    found = []
    for match in _DURATION.finditer(text):
        raw = match["n"].lower()
        count = int(raw) if raw.isdigit() else _WORD_NUMBERS[raw]
        found.append(((count, match["unit"].lower()), match.group(0)))
    return found


@dataclass(frozen=True)
class Evidence:
    """What the turn's tool results said, in the forms a reply is checked against."""

    text: str
    numbers: frozenset[Decimal]
    dates: frozenset[tuple[int, int, int]]
    durations: frozenset[tuple[int, str]]

    @classmethod
    def of(cls, results: Iterable[str]) -> Evidence:
        """From the tool results (their messages and JSON data, as text)."""
        text = "\n".join(results)
        numbers: set[Decimal] = set()
        for match in _ANY_NUMBER.finditer(text):
            value = _number(match.group(0))
            if value is None:
                continue
            numbers.add(value)
            if value == value.to_integral_value():
                # Amounts in the data are in minor units (4900 is $49.00).
                numbers.add((value / 100).normalize())
        dates = {(m, d, y or 0) for (m, d, y), _ in _dates(text)}
        return cls(
            text=text.lower(),
            numbers=frozenset(numbers),
            dates=frozenset(dates),
            durations=frozenset(k for k, _ in _durations(text)),
        )

    def has_date(self, month: int, day: int, year: int | None) -> bool:
        return any(
            m == month and d == day and (year is None or y in (year, 0)) for m, d, y in self.dates
        )


def findings(reply: str, evidence: Evidence) -> list[Finding]:
    """Everything in ``reply`` that ``evidence`` does not back (empty: the reply may go out)."""
    found: list[Finding] = []
    for pattern in _DONE_CLAIMS:
        found.extend(Finding("done_claim", m.group(0)) for m in pattern.finditer(reply))
    date_spans: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        date_spans.extend(m.span() for m in pattern.finditer(reply))
    for (month, day, year), words in _dates(reply):
        if not evidence.has_date(month, day, year):
            found.append(Finding("date", words))
    for match in _MONTH_YEAR.finditer(reply):
        month, year = _month(match["month"]), int(match["year"])
        if not any(m == month and y in (year, 0) for m, _, y in evidence.dates):
            found.append(Finding("date", match.group(0)))
    for pattern in _AMOUNT_PATTERNS:
        for match in pattern.finditer(reply):
            start = match.start("n")
            if any(a <= start < b for a, b in date_spans):
                continue  # a date's day or year, checked as a date
            value = _number(match["n"])
            if value is not None and value not in evidence.numbers:
                found.append(Finding("amount", match.group(0)))
    for match in _RELATIVE_DAY.finditer(reply):
        if match.group(0).lower() not in evidence.text:
            found.append(Finding("date", match.group(0)))
    amount_spans = [m.span("n") for pattern in _AMOUNT_PATTERNS for m in pattern.finditer(reply)]
    for match in _BARE_NUMBER.finditer(reply):
        start = match.start()
        if any(a <= start < b for a, b in [*date_spans, *amount_spans]):
            continue  # checked above
        if any(match.start() >= u.start() and match.end() <= u.end() for u in _URL.finditer(reply)):
            continue  # part of a link, checked below
        value = _number(match.group(0))
        if value is not None and value not in evidence.numbers:
            found.append(Finding("number", match.group(0)))
    for key, words in _durations(reply):
        if key not in evidence.durations:
            found.append(Finding("duration", words))
    for match in _URL.finditer(reply):
        url = match.group(0).rstrip(".,;:!?")
        if url.lower() not in evidence.text:
            found.append(Finding("link", url))
    lowered = reply.lower()
    for term in _POLICY_TERMS:
        if re.search(rf"\b{re.escape(term)}\b", lowered) and term not in evidence.text:
            found.append(Finding("policy", term))
    return found
