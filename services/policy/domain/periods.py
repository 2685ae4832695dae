"""Counter periods: calendar months, weeks (Monday first) or days, starting at midnight in the
workspace's time zone (UTC unless it set one)."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Period(enum.StrEnum):
    """How counters are grouped in time; ordered from shortest to longest by ``LENGTH_ORDER``."""

    CALENDAR_DAY = "calendar_day"
    CALENDAR_WEEK = "calendar_week"
    CALENDAR_MONTH = "calendar_month"


# A shorter period resets more often and so allows more per month: that is a loosening.
LENGTH_ORDER = {Period.CALENDAR_DAY: 1, Period.CALENDAR_WEEK: 2, Period.CALENDAR_MONTH: 3}


def valid_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows ("Europe/Paris", "UTC")."""
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of ``day`` in the zone, in UTC (where a zone skips midnight for summer
    time, the first moment that exists)."""
    moment = datetime.combine(day, time(0), tzinfo=zone)
    # A midnight that does not exist (a summer-time jump at 00:00) maps back to itself only
    # after the jump: step to the first hour that exists.
    while moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment.replace(
        tzinfo=None
    ):
        moment += timedelta(hours=1)
    return moment.astimezone(UTC)


def bounds_of(period: Period, now: datetime, time_zone: str = "UTC") -> tuple[datetime, datetime]:
    """[start, end) in UTC of the period that contains ``now`` (an aware datetime), the
    period's days running from midnight to midnight in ``time_zone``."""
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    if period is Period.CALENDAR_DAY:
        first, after = today, today + timedelta(days=1)
    elif period is Period.CALENDAR_WEEK:
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        after = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
    return _local_midnight(first, zone), _local_midnight(after, zone)
