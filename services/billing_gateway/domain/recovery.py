"""Failed-payment recovery figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

RECOVERY_WINDOW = timedelta(hours=48)


@dataclass(frozen=True)
class CaseOutcome:
    """When a case opened, and when and how it closed."""

    opened_at: datetime
    state: str
    closed_at: datetime | None


@dataclass(frozen=True)
class Stats:
    """Cases opened, recovered within 48 h, recovered at all, and the 48 h rate."""

    failed: int
    recovered_within_48h: int
    recovered: int
    rate: float


def stats(cases: Iterable[CaseOutcome]) -> Stats:
    """Figures over the given cases (the caller selects them by opening time)."""
    failed = recovered = quick = 0
    for case in cases:
        failed += 1
        if case.state == "recovered" and case.closed_at is not None:
            recovered += 1
            if case.closed_at - case.opened_at <= RECOVERY_WINDOW:
                quick += 1
    return Stats(failed, quick, recovered, quick / failed if failed else 0.0)
