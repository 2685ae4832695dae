"""Counter periods: calendar months, weeks (Monday first) or days, all in UTC."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta


class Period(enum.StrEnum):
    """How counters are grouped in time; ordered from shortest to longest by ``LENGTH_ORDER``."""

    CALENDAR_DAY = "calendar_day"
    CALENDAR_WEEK = "calendar_week"
    CALENDAR_MONTH = "calendar_month"


# A shorter period resets more often and so allows more per month: that is a loosening.
LENGTH_ORDER = {Period.CALENDAR_DAY: 1, Period.CALENDAR_WEEK: 2, Period.CALENDAR_MONTH: 3}


def bounds_of(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the period that contains ``now`` (an aware datetime)."""
    moment = now.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.CALENDAR_DAY:
        return day, day + timedelta(days=1)
    if period is Period.CALENDAR_WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    if start.month == 12:
        end = start.replace(year=start.year + 1, month=1)
    else:
        end = start.replace(month=start.month + 1)
    return start, end
