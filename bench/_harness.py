"""What every benchmark scenario needs: load generators, latency tails that say how many
samples they rest on, figures beside their same-run baseline and their goal, a database."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from runtime import database
from runtime.embedded_postgres import EmbeddedPostgres

Call = Callable[[], Awaitable[object]]
BENCH_POSTGRES_DIR = Path(__file__).resolve().parent.parent / ".data" / "bench-pg"
# A p99 is reported only from at least this many samples; fewer give the maximum, so labeled.
MIN_SAMPLES_FOR_P99 = 100
# A call that has not answered after this long counts as failed (the load goes on).
CALL_TIMEOUT_SECONDS = 30.0


def percentile_ms(latencies: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of latencies in seconds, in ms (nearest rank)."""
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def tail_ms(latencies: Sequence[float]) -> tuple[str, float]:
    """("p99", value) from enough samples, else ("max of n=<count>", the maximum)."""
    if len(latencies) >= MIN_SAMPLES_FOR_P99:
        return "p99", round(percentile_ms(latencies, 0.99), 1)
    return f"max of n={len(latencies)} (too few for p99)", round(
        max(latencies, default=0) * 1000, 1
    )


@dataclass(frozen=True)
class Stats:
    """Outcome of a load run: what completed, what failed, and each completed call's latency
    (seconds, from when the call was due, so time queued in the client counts)."""

    completed: int
    failed: int
    seconds: float
    latencies: tuple[float, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def success_share(self) -> float:
        attempted = self.completed + self.failed
        return self.completed / attempted if attempted else 0.0

    @property
    def p50_ms(self) -> float:
        return round(statistics.median(self.latencies) * 1000, 1) if self.latencies else 0.0

    def as_dict(self) -> dict[str, Any]:
        tail_name, tail = tail_ms(self.latencies)
        found: dict[str, Any] = {
            "per_second": round(self.per_second, 1),
            "completed": self.completed,
            "failed": self.failed,
            "success_share": round(self.success_share, 4),
            "p50_ms": self.p50_ms,
            "tail_ms": tail,
            "tail_is": tail_name,
        }
        if self.errors:
            found["first_errors"] = sorted(set(self.errors))[:3]
        return found


def half_rate(saturated: Stats, fraction: float = 0.5) -> float:
    """A fixed rate below the saturation measured in the same run (at least 1/s)."""
    return max(1.0, round(saturated.per_second * fraction, 1))


def seconds_for_samples(rate: float, least: float = 5.0, most: float = 20.0) -> float:
    """How long to run at ``rate`` for enough samples for a p99 (within [least, most])."""
    return max(least, min(most, (MIN_SAMPLES_FOR_P99 + 10) / rate))


async def closed_loop(call: Call, concurrency: int, seconds: float) -> Stats:
    """``concurrency`` callers, each calling again as soon as its call returns."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(call(), CALL_TIMEOUT_SECONDS)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:200])
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Stats(
        len(latencies), len(errors), time.perf_counter() - started, tuple(latencies), tuple(errors)
    )


async def fixed_rate(call: Call, rate: float, seconds: float) -> Stats:
    """Calls started at a fixed rate (open loop); each latency runs from when the call was
    due, so a load generator falling behind shows as latency, not as a lower rate."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one(due: float) -> None:
        try:
            await asyncio.wait_for(call(), CALL_TIMEOUT_SECONDS)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}"[:200])
            return
        latencies.append(time.perf_counter() - due)

    tasks = []
    started = time.perf_counter()
    for index in range(int(rate * seconds)):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return Stats(
        len(latencies), len(errors), time.perf_counter() - started, tuple(latencies), tuple(errors)
    )


@dataclass(frozen=True)
class Goal:
    """What a figure should reach: on its value, or on its ratio to the baseline."""

    text: str
    at_most: float | None = None
    at_least: float | None = None
    on_ratio: bool = False

    def met(self, value: float, ratio: float | None) -> bool | None:
        checked = ratio if self.on_ratio else value
        if checked is None:
            return None
        if self.at_most is not None and checked > self.at_most:
            return False
        return not (self.at_least is not None and checked < self.at_least)


@dataclass(frozen=True)
class Figure:
    """One row of a scenario's table. ``samples`` (seconds) make it a latency tail: over
    several runs, the p99 is taken from all runs' samples when a single run has too few."""

    key: str
    label: str
    value: float
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    goal: Goal | None = None
    samples: tuple[float, ...] = field(default=(), repr=False)
    tail_of: str = ""  # for a latency tail: what the latency is of

    @property
    def ratio(self) -> float | None:
        return round(self.value / self.baseline, 3) if self.baseline else None


def tail_figure(
    key: str, what: str, stats: Stats, goal: Goal | None = None, baseline: Stats | None = None
) -> Figure:
    """The latency tail of ``stats`` as a figure (p99, or the max when samples are few)."""
    name, value = tail_ms(stats.latencies)
    base = tail_ms(baseline.latencies) if baseline is not None else None
    return Figure(
        key,
        f"{what}, {name}",
        value,
        "ms",
        baseline=base[1] if base else None,
        baseline_label=base[0] if base else "",
        goal=goal,
        samples=stats.latencies,
        tail_of=what,
    )


@dataclass
class Run:
    """What one run of a scenario measured: its figures and every raw detail."""

    figures: list[Figure]
    details: dict[str, Any]


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on DATABASE_URL's server or an embedded one; dropped after."""
    embedded = EmbeddedPostgres(BENCH_POSTGRES_DIR)
    server_url = embedded.url()
    name = f"askvault_bench_{os.getpid()}_{time.monotonic_ns() % 1_000_000}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield database.with_database_name(server_url, name)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
        embedded.stop()


def ratio(ours: float, baseline: float) -> float:
    """ours / baseline, rounded; 0 when there is no baseline."""
    return round(ours / baseline, 3) if baseline else 0.0
