"""What every benchmark scenario needs: load generators, percentiles, RSS, a database."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from runtime import database
from runtime.embedded_postgres import EmbeddedPostgres

Call = Callable[[], Awaitable[object]]
BENCH_POSTGRES_DIR = Path(__file__).resolve().parent.parent / ".data" / "bench-pg"


@dataclass(frozen=True)
class Stats:
    """Outcome of a load run."""

    completed: int
    failed: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {
            f"{prefix}per_second": round(self.per_second, 1),
            f"{prefix}p50_ms": round(self.p50_ms, 2),
            f"{prefix}p99_ms": round(self.p99_ms, 2),
            f"{prefix}completed": self.completed,
            f"{prefix}failed": self.failed,
        }


def _stats(latencies: list[float], failed: int, seconds: float) -> Stats:
    if not latencies:
        return Stats(0, failed, seconds, 0.0, 0.0)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Stats(len(ordered), failed, seconds, statistics.median(ordered) * 1000, p99 * 1000)


async def closed_loop(call: Call, concurrency: int, seconds: float) -> Stats:
    """``concurrency`` callers, each calling again as soon as its call returns."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                failures += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return _stats(latencies, failures, time.perf_counter() - started)


async def fixed_rate(call: Call, rate: float, seconds: float) -> Stats:
    """Calls started at a fixed rate (open loop), so latency is measured below saturation."""
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            await call()
        except Exception:
            failures += 1
            return
        latencies.append(time.perf_counter() - started)

    tasks = []
    started = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return _stats(latencies, failures, time.perf_counter() - started)


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
    name = f"askvault_bench_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
        yield database.with_database_name(server_url, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
        embedded.stop()


def ratio(ours: float, baseline: float) -> float:
    """ours / baseline, rounded; 0 when there is no baseline."""
    return round(ours / baseline, 3) if baseline else 0.0
