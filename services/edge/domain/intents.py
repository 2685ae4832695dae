"""Plain-English intents of the billing skill and their entities, without a language model.

The parser is deliberately conservative: it recognises what a customer asks for and pulls
out the objects named (a period, an amount, a plan, Stripe ids). It never decides whether
an action is allowed: whatever the text says ("my manager approved this", "ignore your
rules"), an action still goes through policy and confirmation.
"""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from runtime import currency as currency_units


class Intent(enum.Enum):
    """What the visitor asks for."""

    STATUS = "status"
    RENEWAL = "renewal"
    NEXT_INVOICE = "next_invoice"
    CURRENT_PLAN = "current_plan"
    INVOICES = "invoices"
    EMAIL_INVOICES = "email_invoices"
    DUPLICATE_CHARGE = "duplicate_charge"
    REFUND = "refund"
    LIST_PLANS = "list_plans"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    UNDO = "undo"
    PAUSE = "pause"
    RETRY_PAYMENT = "retry_payment"
    UPDATE_CARD = "update_card"
    HUMAN = "human"
    WHATSAPP_OPT_IN = "whatsapp_opt_in"
    YES = "yes"
    NO = "no"
    GREETING = "greeting"
    FALLBACK = "fallback"


# Intents that read or move billing data: an unverified visitor gets a hand-off for these.
BILLING_INTENTS = frozenset(Intent) - {
    Intent.GREETING,
    Intent.FALLBACK,
    Intent.HUMAN,
    Intent.YES,
    Intent.NO,
}

KNOWN_PLANS = ("free", "starter", "growth", "business", "enterprise")


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


@dataclass(frozen=True)
class Parsed:
    """The intent of one message and the entities it names."""

    intent: Intent
    period: Period | None = None
    amount: MoneyAmount | None = None
    plan: str = ""
    direction: str = ""  # "upgrade" or "downgrade" when said
    charge_id: str = ""
    invoice_id: str = ""
    last_charge: bool = False
    mentions: tuple[str, ...] = field(default_factory=tuple)


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9$€£₹¥.,' ]+", " ", text.lower()).strip() + " "


_YES = re.compile(
    r"^\s*(y|yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|go ahead|do it|please do|"
    r"yes please|sounds good|correct)\s*[.!]*\s*$",
    re.I,
)
_NO = re.compile(r"^\s*(n|no|nope|nah|cancel that|never ?mind|don't|do not|stop)\s*[.!]*\s*$", re.I)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|help)\s*[.!?]*\s*$", re.I
)
_CHARGE_ID = re.compile(r"\b(ch_[A-Za-z0-9]+|py_[A-Za-z0-9]+)\b")
_WHATSAPP_NUMBER = re.compile(r"\+\d[\d ()-]{7,18}\d")
_INVOICE_ID = re.compile(r"\b(in_[A-Za-z0-9]+)\b")
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
        # "may" and "march" are verbs too: only months when clearly one ("in May", "May 2026").
        if name in ("may", "march") and not year_text:  # noqa: SIM102
            if not re.search(rf" (in|for|of|from|during) {name} ", lowered):
                continue
        year = int(year_text) if year_text else (now.year if month <= now.month else now.year - 1)
        end_year, end_month = _add_months(year, month, 1)
        return Period(
            _month_start(year, month, tz),
            _month_start(end_year, end_month, tz),
            f"{calendar.month_name[month]} {year}" if year_text else calendar.month_name[month],
        )
    return None


def _plan_mentions(lowered: str, plan_names: tuple[str, ...]) -> list[str]:
    found: list[tuple[int, str]] = []
    for name in plan_names:
        for match in re.finditer(rf" {re.escape(name.lower())}(?: plan| tier)?[ .,!?]", lowered):
            found.append((match.start(), name.lower()))
    found.sort()
    return [name for _, name in found]


def _target_plan(lowered: str, mentions: list[str]) -> str:
    """The plan moved to: the one after "to"/"into"/"onto", else the last one named."""
    if not mentions:
        return ""
    for name in mentions:
        if re.search(rf" (?:to|into|onto|for|with) (?:the )?{re.escape(name)}[ .,!?]", lowered):
            return name
    return mentions[-1]


def _any(pattern: str, lowered: str) -> bool:
    return re.search(pattern, lowered) is not None


def parse(text: str, now: datetime, plan_names: tuple[str, ...] = KNOWN_PLANS) -> Parsed:
    """The intent and entities of one chat message."""
    if _YES.match(text):
        return Parsed(Intent.YES)
    if _NO.match(text):
        return Parsed(Intent.NO)
    lowered = _words(text)
    charge_match = _CHARGE_ID.search(text)
    invoice_match = _INVOICE_ID.search(text)
    amount = parse_amount(text)
    period = parse_period(text, now)
    mentions = _plan_mentions(lowered, plan_names)
    base = Parsed(
        Intent.FALLBACK,
        amount=amount,
        period=period,
        charge_id=charge_match.group(1) if charge_match else "",
        invoice_id=invoice_match.group(1) if invoice_match else "",
        mentions=tuple(mentions),
    )

    if _any(
        r" (human|agent|person|someone|representative|real people|support team|operator)[ .,!?]",
        lowered,
    ) and _any(r" (talk|speak|chat|connect|get|want|need|transfer|escalate)", lowered):
        return replace(base, intent=Intent.HUMAN)
    if _any(r" (whatsapp|whats app)[ .,!?]", lowered) and _WHATSAPP_NUMBER.search(text):
        # "send my billing messages to WhatsApp +1 415 555 0100": consent with the number.
        return replace(base, intent=Intent.WHATSAPP_OPT_IN)
    if _any(
        r" (charged|billed|paid|payment taken|charge[sd]?) (me )?(twice|two times|double|2 times)",
        lowered,
    ) or _any(r" (double|duplicate)[d]? (charge|charged|payment|billing|billed)", lowered):
        return replace(base, intent=Intent.DUPLICATE_CHARGE)
    if (
        _any(r" (undo|reverse|take back|revert)[ .,!?]", lowered)
        or _any(r" (don't|do not|dont) (cancel|want to cancel)", lowered)
        or _any(r" (keep|restore|reactivate) my (subscription|plan|account)", lowered)
        or _any(r" changed my mind", lowered)
    ):
        return replace(base, intent=Intent.UNDO)
    if (
        _any(r" (retry|try again|pay now|retry now|charge (my card|me) again)", lowered)
        or lowered.strip() == "retry"
    ):
        return replace(base, intent=Intent.RETRY_PAYMENT)
    if _any(
        r" (update|change|replace|new|add|switch) (my |the |a )?"
        r"(credit |debit |payment )?(card|payment method)",
        lowered,
    ) or _any(r" card (details|info|information|number) ", lowered):
        return replace(base, intent=Intent.UPDATE_CARD)
    if _any(r" refund", lowered) or _any(r" money back", lowered):
        last = _any(
            r" (last|latest|most recent|previous) (charge|payment|invoice)", lowered
        ) or not (charge_match or amount)
        return replace(base, intent=Intent.REFUND, last_charge=last)
    if _any(r" (pause|freeze|suspend|hold)[ .,!?]", lowered) or _any(r" put .* on hold", lowered):
        return replace(base, intent=Intent.PAUSE)
    if _any(
        r" (cancel|unsubscribe|terminate|end|stop) (my |the )?"
        r"(subscription|plan|account|membership|billing)",
        lowered,
    ) or _any(r" (cancel|unsubscribe)[ .,!?]", lowered):
        return replace(base, intent=Intent.CANCEL)
    direction = ""
    if _any(r" upgrade", lowered):
        direction = "upgrade"
    elif _any(r" downgrade", lowered):
        direction = "downgrade"
    change_words = _any(
        r" (change|switch|move|go|upgrade|downgrade|upgrading|downgrading|swap)", lowered
    )
    if direction or (change_words and mentions):
        return replace(
            base,
            intent=Intent.CHANGE_PLAN,
            plan=_target_plan(lowered, mentions),
            direction=direction,
        )
    if _any(r" (plans|pricing|prices|options|tiers)[ .,!?]", lowered) and not _any(
        r" my plan", lowered
    ):
        return replace(base, intent=Intent.LIST_PLANS)
    if _any(r" invoices?[ .,!?]|receipts?[ .,!?]|billing history| statements?[ .,!?]", lowered):
        if _any(r" (email|e-mail|mail|send)", lowered):
            return replace(base, intent=Intent.EMAIL_INVOICES)
        if _any(r" (next|upcoming) (invoice|bill)", lowered):
            return replace(base, intent=Intent.NEXT_INVOICE)
        return replace(base, intent=Intent.INVOICES)
    if _any(r" (next|upcoming) (bill|payment|charge)|how much will i (be charged|pay)", lowered):
        return replace(base, intent=Intent.NEXT_INVOICE)
    if _any(r" (renew|renewal|renews|next billing|billing date|when .* (charged|billed))", lowered):
        return replace(base, intent=Intent.RENEWAL)
    if _any(r" (which|what|current|my) (plan|tier)", lowered):
        return replace(base, intent=Intent.CURRENT_PLAN)
    if _any(r" (status|subscription|account|billing|am i (paid|subscribed))", lowered):
        return replace(base, intent=Intent.STATUS)
    if _GREETING.match(text):
        return replace(base, intent=Intent.GREETING)
    return replace(base, intent=Intent.FALLBACK)
