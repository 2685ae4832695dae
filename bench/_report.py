"""Several runs of a scenario into one summary (median and spread per figure, the verdict
against its goal taken on the median), and the summaries into results.md."""

from __future__ import annotations

import statistics
from typing import Any

from bench._harness import MIN_SAMPLES_FOR_P99, Figure, Run, percentile_ms


def _spread(values: list[float]) -> dict[str, float]:
    middle = statistics.median(values)
    low, high = min(values), max(values)
    return {
        "median": round(middle, 3),
        "min": round(low, 3),
        "max": round(high, 3),
        "spread_percent": round((high - low) / middle * 100, 1) if middle else 0.0,
    }


def _tail(figures: list[Figure]) -> tuple[str, dict[str, float]]:
    """A latency tail over runs: the median of per-run p99s when every run had enough
    samples, else the p99 (or max) of all runs' samples together."""
    counts = [len(figure.samples) for figure in figures]
    what = figures[0].tail_of
    if min(counts) >= MIN_SAMPLES_FOR_P99:
        return f"{what}, p99", _spread([figure.value for figure in figures])
    pooled = [sample for figure in figures for sample in figure.samples]
    runs = len(figures)
    per_run = _spread([figure.value for figure in figures])
    if len(pooled) >= MIN_SAMPLES_FOR_P99:
        label = f"{what}, p99 of {len(pooled)} samples pooled over {runs} runs (range: per-run max)"
        return label, {**per_run, "median": round(percentile_ms(pooled, 0.99), 1)}
    label = f"{what}, max of {len(pooled)} samples over {runs} runs (too few for p99)"
    return label, {**per_run, "median": round(max(pooled, default=0) * 1000, 1)}


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per figure key, in the order of the first run."""
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys(figure.key for run in runs for figure in run.figures))
    for key in keys:
        figures = [f for run in runs for f in run.figures if f.key == key]
        first = figures[0]
        if first.tail_of:
            label, value = _tail(figures)
        else:
            label, value = first.label, _spread([figure.value for figure in figures])
        baselines = [figure.baseline for figure in figures if figure.baseline is not None]
        ratios = [figure.ratio for figure in figures if figure.ratio is not None]
        ratio = _spread(ratios) if ratios else None
        met = (
            first.goal.met(value["median"], ratio["median"] if ratio else None)
            if first.goal
            else None
        )
        no_samples = bool(first.tail_of) and not any(figure.samples for figure in figures)
        rows.append(
            {
                "key": key,
                "figure": label,
                "unit": first.unit,
                "value": value,
                "baseline": _spread(baselines) if baselines else None,
                "baseline_is": first.baseline_label,
                "ratio": ratio,
                "goal": first.goal.text if first.goal else "",
                "verdict": "falls short (no samples)"
                if no_samples and first.goal
                else ("" if met is None else ("pass" if met else "falls short")),
                "runs": len(figures),
            }
        )
    return rows


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            found += _flatten(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def details(runs: list[Run]) -> dict[str, Any]:
    """Every raw detail: numbers as median and range over the runs, the rest as in run 1."""
    per_key: dict[str, list[Any]] = {}
    for run in runs:
        for key, value in _flatten(run.details):
            per_key.setdefault(key, []).append(value)
    merged: dict[str, Any] = {}
    for key, values in per_key.items():
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        merged[key] = (
            _spread([float(n) for n in numbers]) if len(numbers) == len(values) else values[0]
        )
    return merged


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.1f}"


def _ranged(spread: dict[str, float] | None, unit: str = "") -> str:
    if spread is None:
        return "—"
    unit = f" {unit}" if unit else ""
    if spread["min"] == spread["max"]:
        return f"{_number(spread['median'])}{unit}"
    return f"{_number(spread['median'])}{unit} ({_number(spread['min'])}-{_number(spread['max'])})"


def _goals(results: dict[str, Any]) -> str:
    """Every figure with a goal, all scenarios in one table."""
    lines = [
        "## Goals (issue 16)",
        "",
        "| scenario | figure | ours (median, range) | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, outcome in results["scenarios"].items():
        for row in outcome.get("summary", []):
            if row["goal"]:
                lines.append(
                    f"| {name} | {row['figure']} | {_ranged(row['value'], row['unit'])} | "
                    f"{_ranged(row['ratio'])} | {row['goal']} | {row['verdict']} |"
                )
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Last run started {results['started_at']} on {results['machine']}, {results['runs']} "
        "runs per scenario (a partial run keeps the other scenarios' figures: each says when "
        "it ran). Each cell is the median over the runs with the range (min-max) in "
        "brackets; the ratio is taken per run against the baseline measured in that same "
        "run, and the verdict is on the median. Latency tails are p99 only where at least "
        f"{MIN_SAMPLES_FOR_P99} samples back them, else the maximum, so labeled. Produced by "
        "`make bench` (`python -m bench [scenario ...] [--runs N]`); raw figures in "
        "`results.json`.",
        "",
    ]
    lines += [_goals(results), ""]
    for name, outcome in results["scenarios"].items():
        lines += [f"## {name}", ""]
        if outcome.get("about"):
            lines += [outcome["about"], ""]
        for error in outcome.get("errors", []):
            lines += [f"- a run failed: `{error}`"]
        if outcome.get("errors"):
            lines.append("")
        if not outcome.get("summary"):
            continue
        lines += [
            "| figure | ours | same-run baseline | ratio | goal | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for row in outcome["summary"]:
            base = _ranged(row["baseline"], row["unit"])
            if row["baseline_is"] and row["baseline"] is not None:
                base += f" ({row['baseline_is']})"
            lines.append(
                f"| {row['figure']} | {_ranged(row['value'], row['unit'])} | {base} | "
                f"{_ranged(row['ratio'])} | {row['goal'] or '—'} | {row['verdict'] or '—'} |"
            )
        lines += [
            "",
            f"Started {outcome.get('started_at', results['started_at'])}, {outcome.get('runs')} "
            f"runs, wall time {outcome.get('wall_seconds', 0):.0f} s.",
            "",
        ]
    return "\n".join(lines)
