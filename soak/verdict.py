"""The soak's pass criteria as pure functions of the per-interval samples: no process, no
database, no clock, so that each criterion is tested on figures made up to pass or fail.

Warm-up: the first ``warm_up_intervals`` intervals (3 minutes by default) are left out; the
services fill their pools, caches and the interpreter's arenas there. Of the intervals after
warm-up, the first third (one to three intervals) is the early window and the last third the
late window; RSS growth compares each service's mean RSS over the two windows, p99 drift
the p99 of every turn completed in each window."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The limits: RSS growth after warm-up and p99 drift, as fractions.
RSS_GROWTH_LIMIT = 0.10
P99_DRIFT_LIMIT = 0.20
# The early and late windows are a third of the intervals after warm-up, at most this many.
MAX_WINDOW_INTERVALS = 3


@dataclass(frozen=True)
class Interval:
    """What the verdict needs of one interval: RSS per process (MiB) and the latency of each
    chat turn completed in it (seconds)."""

    rss_mb: Mapping[str, float]
    latencies: Sequence[float]


@dataclass(frozen=True)
class Tally:
    """Counted after the run, each from two independent sides (the ledgers and Stripe, the
    outbox and the SMTP sink or the WhatsApp emulator, Stripe's events and the inbox)."""

    lost: Mapping[str, int]
    duplicated: Mapping[str, int]
    differences: Sequence[str]


@dataclass(frozen=True)
class Check:
    """One criterion: what was measured, its limit, whether it holds, and why."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def relative_change(before: float, after: float) -> float:
    """(after - before) / before; +inf when there was nothing before and something after."""
    if before == 0:
        return 0.0 if after == 0 else math.inf
    return (after - before) / before


def windows(count: int, warm_up: int) -> tuple[range, range]:
    """The early and late windows (indexes into the intervals) after ``warm_up`` intervals;
    ValueError when no interval is left after warm-up."""
    measured = count - warm_up
    if measured < 1:
        raise ValueError(f"{count} intervals leave none after a warm-up of {warm_up}")
    size = min(max(measured // 3, 1), MAX_WINDOW_INTERVALS)
    return range(warm_up, warm_up + size), range(count - size, count)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def rss_growth(intervals: Sequence[Interval], warm_up: int, process: str) -> float:
    """The growth of one process's mean RSS from the early to the late window."""
    early, late = windows(len(intervals), warm_up)
    return relative_change(
        _mean([intervals[i].rss_mb[process] for i in early]),
        _mean([intervals[i].rss_mb[process] for i in late]),
    )


def p99_drift(intervals: Sequence[Interval], warm_up: int) -> tuple[float, float, float]:
    """(early p99, late p99, relative change) of the turns completed in each window."""
    early, late = windows(len(intervals), warm_up)
    before = percentile([s for i in early for s in intervals[i].latencies], 0.99)
    after = percentile([s for i in late for s in intervals[i].latencies], 0.99)
    if math.isnan(before) or math.isnan(after):
        return before, after, math.nan
    return before, after, relative_change(before, after)


def judge(
    intervals: Sequence[Interval],
    warm_up: int,
    services: Sequence[str],
    tally: Tally,
    rss_limit: float = RSS_GROWTH_LIMIT,
    drift_limit: float = P99_DRIFT_LIMIT,
) -> Verdict:
    """Every criterion of the soak, one check each (RSS growth per service)."""
    checks: list[Check] = []
    early, late = windows(len(intervals), warm_up)
    span = f"intervals {early.start + 1}-{early.stop} vs {late.start + 1}-{late.stop}"
    for name in services:
        growth = rss_growth(intervals, warm_up, name)
        checks.append(
            Check(
                f"RSS growth {name}",
                growth <= rss_limit,
                f"{growth:+.1%} (limit {rss_limit:+.0%}; mean RSS, {span})",
            )
        )
    before, after, drift = p99_drift(intervals, warm_up)
    checks.append(
        Check(
            "p99 drift of chat turns",
            not math.isnan(drift) and drift <= drift_limit,
            f"{before * 1000:.0f} ms -> {after * 1000:.0f} ms: {drift:+.1%} "
            f"(limit {drift_limit:+.0%}; {span})",
        )
    )
    for what, counts in (("lost", tally.lost), ("duplicated", tally.duplicated)):
        found = {kind: n for kind, n in counts.items() if n}
        checks.append(
            Check(
                f"0 {what}",
                not found,
                ", ".join(f"{n} {kind}" for kind, n in found.items()) or f"none {what}",
            )
        )
    checks.append(
        Check(
            "reconciliation clean",
            not tally.differences,
            f"{len(tally.differences)} differences" if tally.differences else "no differences",
        )
    )
    return Verdict(checks)
