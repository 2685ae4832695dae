"""The soak's report: one row per interval (turns and their p50/p99, WhatsApp webhooks, RSS,
CPU, descriptors and sockets per process, database connections per role and application),
each step's latency in the early and late windows (where a drift comes from), the tallies,
chaos's reconciliation figures and the verdict, as JSON and as markdown."""

from __future__ import annotations

import json
import math
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaos.load import Turn
from soak.sampling import ProcessSample
from soak.verdict import Tally, Verdict, percentile, relative_change, windows
from soak.workload import Mix, WhatsAppPost

if TYPE_CHECKING:
    from soak.run import Plan


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1) if not math.isnan(seconds) else math.nan


@dataclass(frozen=True)
class Row:
    """One interval of the run."""

    interval: int
    minute: float
    warm_up: bool
    turns: int
    failed_turns: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    whatsapp_messages: int
    whatsapp_p99_ms: float
    processes: Mapping[str, ProcessSample]
    db_connections: Mapping[str, int]
    # Every turn's latency (seconds), for the verdict's pooled p99; not written out.
    latencies: Sequence[float] = field(default=(), repr=False)
    # The same per step of the scripts, for the per-step windows; not written out.
    step_latencies: Mapping[str, Sequence[float]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls,
        interval: int,
        minute: float,
        turns: Sequence[Turn],
        posts: Sequence[WhatsAppPost],
        processes: Mapping[str, ProcessSample],
        connections: Mapping[str, int],
        warm_up: bool,
    ) -> Row:
        seconds = [turn.seconds for turn in turns]
        by_step: dict[str, list[float]] = {}
        for turn in turns:
            by_step.setdefault(turn.step, []).append(turn.seconds)
        return cls(
            interval,
            round(minute, 2),
            warm_up,
            len(turns),
            sum(1 for turn in turns if turn.status is None or turn.status >= 500),
            _ms(percentile(seconds, 0.5)),
            _ms(percentile(seconds, 0.99)),
            _ms(max(seconds, default=math.nan)),
            len(posts),
            _ms(percentile([post.seconds for post in posts], 0.99)),
            dict(processes),
            dict(connections),
            tuple(seconds),
            {step: tuple(values) for step, values in by_step.items()},
        )

    def rss(self) -> dict[str, float]:
        return {name: sample.rss_mb for name, sample in self.processes.items()}

    def line(self) -> str:
        rss = " ".join(f"{name}={s.rss_mb:.0f}" for name, s in self.processes.items())
        return (
            f"  [{self.interval:>3}] {self.minute:6.2f} min {'warm-up ' if self.warm_up else ''}"
            f"turns {self.turns} (failed {self.failed_turns}) p50 {self.p50_ms} ms "
            f"p99 {self.p99_ms} ms; RSS MiB {rss}; db {sum(self.db_connections.values())}"
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies"], data["step_latencies"]
        return data


@dataclass(frozen=True)
class Result:
    plan: Plan
    rows: list[Row]
    tally: Tally
    verdict: Verdict
    figures: dict[str, Any]
    mix: Mix
    services: list[str]

    def as_json(self) -> dict[str, Any]:
        turns = self.mix.load.turns
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}",
            "minutes": self.plan.minutes,
            "warm_up_minutes": self.plan.warm_up_minutes,
            "interval_seconds": self.plan.interval_seconds,
            "load": asdict(self.plan.shape),
            "services_judged": self.services,
            "passed": self.verdict.passed,
            "checks": [asdict(check) for check in self.verdict.checks],
            "lost": dict(self.tally.lost),
            "duplicated": dict(self.tally.duplicated),
            "differences": list(self.tally.differences),
            "turns": len(turns),
            "intents_by_step": _intents(turns),
            "steps": _steps(self.rows, self.plan.warm_up_intervals),
            "customers_made": len(self.mix.load.customers),
            "stripe_activity": dict(self.mix.load.stripe_pokes),
            "reconciliation": self.figures,
            "intervals": [row.as_json() for row in self.rows],
        }


def _intents(turns: Sequence[Turn]) -> dict[str, dict[str, int]]:
    """Per step of the scripts, the intents the edge read (every intent was exercised)."""
    found: dict[str, Counter[str]] = {}
    for turn in turns:
        found.setdefault(turn.step, Counter())[turn.intent or turn.outcome] += 1
    return {step: dict(counts) for step, counts in found.items()}


def _steps(rows: Sequence[Row], warm_up: int) -> dict[str, dict[str, float]]:
    """Per step of the scripts, its turns' count, p50 and p99 (ms) in the verdict's early and
    late windows, and the p99's change: which step a drift of the whole comes from."""
    if len(rows) <= warm_up:
        return {}
    early, late = windows(len(rows), warm_up)

    def pooled(span: range, step: str) -> list[float]:
        return [s for i in span for s in rows[i].step_latencies.get(step, ())]

    found: dict[str, dict[str, float]] = {}
    for step in sorted({step for row in rows for step in row.step_latencies}):
        before, after = pooled(early, step), pooled(late, step)
        p99_before, p99_after = percentile(before, 0.99), percentile(after, 0.99)
        found[step] = {
            "early_turns": len(before),
            "early_p50_ms": _ms(percentile(before, 0.5)),
            "early_p99_ms": _ms(p99_before),
            "late_turns": len(after),
            "late_p50_ms": _ms(percentile(after, 0.5)),
            "late_p99_ms": _ms(p99_after),
            "p99_change": round(relative_change(p99_before, p99_after), 3)
            if before and after
            else math.nan,
        }
    return found


def _cpu_percent(intervals: Sequence[dict[str, Any]], index: int, name: str) -> float:
    """The share of one core a process used in an interval (CPU seconds over its length);
    NaN for the first interval, which holds the process's start."""
    if index == 0:
        return math.nan
    now, before = intervals[index], intervals[index - 1]
    seconds = (now["minute"] - before["minute"]) * 60
    used = now["processes"][name]["cpu_seconds"] - before["processes"][name]["cpu_seconds"]
    return round(100 * used / seconds, 1) if seconds > 0 else math.nan


def write(result: Result, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = result.as_json()
    (out / "soak.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / "soak.md").write_text(markdown(data))


def _cell(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(v) for v in row) + " |" for row in rows),
        "",
    ]


def markdown(data: dict[str, Any]) -> str:
    """The report for people: the verdict first, then the per-interval tables."""
    intervals: list[dict[str, Any]] = data["intervals"]
    names = list(intervals[0]["processes"]) if intervals else []
    roles = sorted({role for row in intervals for role in row["db_connections"]})
    unit = "minute" if data["interval_seconds"] == 60 else f"{data['interval_seconds']} s"
    lines = [
        "# Soak",
        "",
        f"`make soak SOAK_MINUTES={data['minutes']:g}` (the default is 20 minutes), "
        f"{data['generated_at']}, {data['machine']}. Warm-up: the first "
        f"{data['warm_up_minutes']:g} minutes (marked *) are left out of the verdict; the "
        "early and late windows are the first and last third of the rest (1 to 3 intervals).",
        "",
        f"Load: {data['load']}; {data['turns']} chat turns, "
        f"{data['customers_made']} fresh Stripe customers, Stripe activity "
        f"{data['stripe_activity']}.",
        "",
        f"## Verdict: {'PASS' if data['passed'] else 'FAIL'}",
        "",
        *_table(
            ["criterion", "holds", "measured"],
            [[c["name"], "yes" if c["passed"] else "**no**", c["detail"]] for c in data["checks"]],
        ),
    ]
    if data["differences"]:
        lines += ["Differences:", "", *(f"- {d}" for d in data["differences"]), ""]
    lines += [
        f"## Latency and volume per {unit}",
        "",
        *_table(
            ["#", "min", "turns", "failed", "p50 ms", "p99 ms", "max ms", "WhatsApp", "WA p99 ms"],
            [
                [
                    f"{r['interval']}{'*' if r['warm_up'] else ''}",
                    r["minute"],
                    r["turns"],
                    r["failed_turns"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                    r["whatsapp_messages"],
                    r["whatsapp_p99_ms"],
                ]
                for r in intervals
            ],
        ),
        "## Chat turns per step, early vs late window (where a drift comes from)",
        "",
        *_table(
            ["step", "early turns", "p50 ms", "p99 ms", "late turns", "p50 ms", "p99 ms", "p99"],
            [
                [
                    step,
                    v["early_turns"],
                    v["early_p50_ms"],
                    v["early_p99_ms"],
                    v["late_turns"],
                    v["late_p50_ms"],
                    v["late_p99_ms"],
                    f"{v['p99_change']:+.0%}" if not math.isnan(v["p99_change"]) else "-",
                ]
                for step, v in data["steps"].items()
            ],
        ),
        f"## RSS per process (MiB) per {unit}",
        "",
        *_table(
            ["#", *names],
            [
                [f"{r['interval']}{'*' if r['warm_up'] else ''}"]
                + [r["processes"][n]["rss_mb"] for n in names]
                for r in intervals
            ],
        ),
        f"## CPU per process (% of one core) per {unit}",
        "",
        *_table(
            ["#", *names],
            [
                [f"{r['interval']}{'*' if r['warm_up'] else ''}"]
                + [_cpu_percent(intervals, i, n) for n in names]
                for i, r in enumerate(intervals)
            ],
        ),
        f"## File descriptors / sockets per process per {unit}",
        "",
        *_table(
            ["#", *names],
            [
                [f"{r['interval']}{'*' if r['warm_up'] else ''}"]
                + [f"{r['processes'][n]['fds']}/{r['processes'][n]['sockets']}" for n in names]
                for r in intervals
            ],
        ),
        f"## PostgreSQL connections (pg_stat_activity) per role/application per {unit}",
        "",
        *_table(
            ["#", *roles],
            [
                [f"{r['interval']}{'*' if r['warm_up'] else ''}"]
                + [r["db_connections"].get(role, 0) for role in roles]
                for r in intervals
            ],
        ),
        "## Lost and duplicated",
        "",
        *_table(
            ["what", "count"],
            [[f"lost: {k}", v] for k, v in data["lost"].items()]
            + [[f"duplicated: {k}", v] for k, v in data["duplicated"].items()],
        ),
        "## Intents read per step",
        "",
        *_table(
            ["step", "intents"],
            [
                [step, ", ".join(f"{k} {v}" for k, v in c.items())]
                for step, c in data["intents_by_step"].items()
            ],
        ),
        "## Reconciliation figures (chaos.reconcile)",
        "",
        *(f"- {name}: {value}" for name, value in data["reconciliation"].items()),
        "",
    ]
    return "\n".join(lines)


def print_summary(result: Result) -> None:
    print(f"\n=== soak: {'PASS' if result.verdict.passed else 'FAIL'} ===")
    for check in result.verdict.checks:
        print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name}: {check.detail}")
    for difference in result.tally.differences:
        print(f"  - {difference}")
    print(flush=True)
