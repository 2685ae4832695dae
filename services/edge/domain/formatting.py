"""Money and dates the way the bot says them: "$49", "₹1,599", "May 28, 2026"."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from runtime import currency as currency_units

_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "inr": "₹", "jpy": "¥", "cad": "CA$", "aud": "A$"}


def money(amount_minor: int, currency: str) -> str:
    """An amount for people in the currency's own unit: whole amounts without decimals ("$49",
    "¥5,000"), else with as many as the currency has ("$12.50", "1.234 KWD"); Indian rupees
    grouped the usual way for small amounts ("₹1,599"); negative with a minus."""
    code = currency.lower()
    sign = "-" if amount_minor < 0 else ""
    number = currency_units.number(abs(amount_minor), code, grouped=True, drop_zero_decimals=True)
    symbol = _SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{number} {code.upper()}"
    return f"{sign}{symbol}{number}"


def date(moment: datetime, zone: str) -> str:
    """A date in the workspace's time zone: "May 28, 2026"."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%B} {local.day}, {local.year}"


def short_date(moment: datetime, zone: str, now: datetime) -> str:
    """ "May 1" in the current year, "Dec 3, 2025" otherwise."""
    local = moment.astimezone(ZoneInfo(zone))
    if local.year == now.astimezone(ZoneInfo(zone)).year:
        return f"{local:%B} {local.day}"
    return f"{local:%b} {local.day}, {local.year}"


def interval(name: str, count: int = 1) -> str:
    """ "month" -> "/month", 3 months -> "/3 months"."""
    if not name:
        return ""
    return f"/{name}" if count <= 1 else f"/{count} {name}s"


def listing(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
