"""The soak report's per-step windows and CPU shares on made-up rows: a drift of the whole is
traced to the step it comes from."""

from __future__ import annotations

import math
from typing import Any

from soak import report
from soak.sampling import ProcessSample


def _row(index: int, steps: dict[str, list[float]], cpu: float) -> report.Row:
    latencies = [s for values in steps.values() for s in values]
    return report.Row(
        interval=index + 1,
        minute=float(index + 1),
        warm_up=index == 0,
        turns=len(latencies),
        failed_turns=0,
        p50_ms=0.0,
        p99_ms=0.0,
        max_ms=0.0,
        whatsapp_messages=0,
        whatsapp_p99_ms=math.nan,
        processes={"edge": ProcessSample(1, 90.0, 10, 5, cpu)},
        db_connections={},
        latencies=latencies,
        step_latencies=steps,
    )


def test_the_step_whose_p99_grew_is_the_one_reported_grown() -> None:
    steady = [0.02] * 100
    rows = [
        _row(i, {"status?": steady, "refund?": [0.05] * 97 + [0.05 + 0.01 * i] * 3}, 6.0 * i)
        for i in range(7)
    ]
    steps = report._steps(rows, warm_up=1)
    assert steps["status?"]["p99_change"] == 0.0
    assert steps["refund?"]["early_p99_ms"] == 70.0  # intervals 2-3: slowest of early 0.07
    assert steps["refund?"]["late_p99_ms"] == 110.0  # intervals 6-7: slowest of late 0.11
    assert steps["refund?"]["p99_change"] > 0.5
    assert steps["refund?"]["early_turns"] == 200


def test_cpu_share_is_the_interval_s_cpu_seconds_over_its_length() -> None:
    rows: list[dict[str, Any]] = [
        _row(i, {"status?": [0.01]}, cpu).as_json() for i, cpu in enumerate([3.0, 9.0, 39.0])
    ]
    assert math.isnan(report._cpu_percent(rows, 0, "edge"))
    assert report._cpu_percent(rows, 1, "edge") == 10.0
    assert report._cpu_percent(rows, 2, "edge") == 50.0
