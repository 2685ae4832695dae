"""The soak's criteria on made-up samples: each one passes on figures inside its limit and
fails on figures just outside it."""

from __future__ import annotations

import math

import pytest

from soak import verdict
from soak.verdict import Interval, Tally

CLEAN = Tally(lost={"emails": 0}, duplicated={"refunds": 0}, differences=[])


def _intervals(rss: list[float], p99: list[float]) -> list[Interval]:
    """Intervals of one process "edge" with 99 turns at 10 ms and one at the given p99 ...
    and that one at the top, so the 99th percentile of 100 turns is the 99th value."""
    return [
        Interval({"edge": mb}, [0.01] * 98 + [slow, slow])
        for mb, slow in zip(rss, p99, strict=True)
    ]


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert verdict.percentile(values, 0.99) == 99.0
    assert verdict.percentile(values, 0.5) == 50.0
    assert verdict.percentile([3.0], 0.99) == 3.0
    assert math.isnan(verdict.percentile([], 0.99))


def test_windows_are_a_third_after_warm_up_at_most_three() -> None:
    # 20 one-minute intervals, 3 of warm-up: 17 left, windows of 3.
    assert verdict.windows(20, 3) == (range(3, 6), range(17, 20))
    # 6 intervals, 3 of warm-up (the committed 6-minute run): minute 4 against minute 6.
    assert verdict.windows(6, 3) == (range(3, 4), range(5, 6))
    with pytest.raises(ValueError, match="none after a warm-up"):
        verdict.windows(3, 3)


def test_rss_growth_compares_window_means_after_warm_up() -> None:
    # The warm-up's growth (50 -> 100) does not count; 100 -> 109 is +9%.
    grown = _intervals([50, 80, 100, 104, 109, 109], [0.1] * 6)
    assert verdict.rss_growth(grown, 2, "edge") == pytest.approx(0.09)


def test_rss_growth_over_the_limit_fails_and_names_the_process() -> None:
    leaking = _intervals([100, 100, 100, 100, 105, 111], [0.1] * 6)
    judged = verdict.judge(leaking, 3, ["edge"], CLEAN)
    assert not judged.passed
    (rss,) = [check for check in judged.checks if check.name == "RSS growth edge"]
    assert not rss.passed and "+11.0%" in rss.detail, rss
    steady = _intervals([100, 100, 100, 100, 105, 110], [0.1] * 6)
    assert verdict.judge(steady, 3, ["edge"], CLEAN).passed


def test_p99_drift_over_the_limit_fails() -> None:
    drifting = _intervals([100] * 6, [0.1, 0.1, 0.1, 0.100, 0.11, 0.121])
    before, after, drift = verdict.p99_drift(drifting, 3)
    assert (before, after) == (0.1, 0.121)
    assert drift == pytest.approx(0.21)
    assert not verdict.judge(drifting, 3, ["edge"], CLEAN).passed
    within = _intervals([100] * 6, [0.1, 0.1, 0.1, 0.100, 0.11, 0.12])
    assert verdict.judge(within, 3, ["edge"], CLEAN).passed


def test_no_turns_after_warm_up_fails_the_drift() -> None:
    silent = [Interval({"edge": 100.0}, [0.01])] * 3 + [Interval({"edge": 100.0}, [])] * 3
    (drift,) = [c for c in verdict.judge(silent, 3, ["edge"], CLEAN).checks if "p99" in c.name]
    assert not drift.passed


@pytest.mark.parametrize(
    ("tally", "failing"),
    [
        (Tally({"emails": 1}, {"refunds": 0}, []), "0 lost"),
        (Tally({"emails": 0}, {"refunds": 2}, []), "0 duplicated"),
        (Tally({"emails": 0}, {"refunds": 0}, ["a difference"]), "reconciliation clean"),
    ],
)
def test_lost_duplicated_and_differences_each_fail(tally: Tally, failing: str) -> None:
    judged = verdict.judge(_intervals([100] * 6, [0.1] * 6), 3, ["edge"], tally)
    assert not judged.passed
    assert [check.name for check in judged.checks if not check.passed] == [failing]
