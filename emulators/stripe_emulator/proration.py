"""Billing periods and proration, computed to the second as Stripe does.

A price change at time `t` inside the period [start, end) yields two lines:
- a credit for the unused time of the old price: -round(old * qty * (end - t) / (end - start))
- a charge for the remaining time of the new price: round(new * qty * (end - t) / (end - start))
Each amount is rounded on its own to whole minor units, half away from zero.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

SECONDS_PER_DAY = 86_400


def add_interval(anchor: int, interval: str, count: int) -> int:
    """`anchor` moved by `count` intervals; months keep the anchor's day, clamped to month end."""
    if interval == "day":
        return anchor + count * SECONDS_PER_DAY
    if interval == "week":
        return anchor + count * 7 * SECONDS_PER_DAY
    moment = dt.datetime.fromtimestamp(anchor, dt.UTC)
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period_end_after(anchor: int, period_start: int, interval: str, count: int) -> int:
    """The first boundary of the cycle anchored at `anchor` that is later than `period_start`."""
    step = 1
    boundary = add_interval(anchor, interval, count)
    while boundary <= period_start:
        step += 1
        boundary = add_interval(anchor, interval, count * step)
    return boundary


def prorated_amount(
    unit_amount: int, quantity: int, period_start: int, period_end: int, at: int
) -> int:
    """The share of `unit_amount * quantity` for [at, period_end) of [period_start, period_end)."""
    if period_end <= period_start:
        return 0
    remaining = min(max(period_end - at, 0), period_end - period_start)
    exact = (
        Decimal(unit_amount * quantity) * Decimal(remaining) / Decimal(period_end - period_start)
    )
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_day(timestamp: int) -> str:
    """Stripe's line item dates: `5 Nov 2026`."""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return f"{moment.day} {moment:%b %Y}"


def format_money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "inr": "₹", "gbp": "£"}.get(currency, "")
    major = Decimal(amount) / 100
    text = f"{symbol}{major:,.2f}"
    return text if symbol else f"{text} {currency.upper()}"
