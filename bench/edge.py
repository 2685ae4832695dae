"""Chat turns over HTTP, every service its own process (`python -m <service>` as `make run`
starts them, on the emulators). Status turns with the billing gateway's mirror warm: peak
throughput with 32 concurrent callers (failures and Stripe requests counted), beside a bare
HTTP -> gRPC -> one-query pipeline (Starlette/uvicorn process -> grpc.aio process -> one
asyncpg SELECT, both on uvloop, same client) measured in the same run; then the latency at
half the measured peak, beside the bare pipeline at the same rate. Confirmed refunds: the
"yes" turn that creates the refund in Stripe, timed, at 1 refund per second. Peak RSS of
every service process. Changed from the defaults: the edge's per-visitor and per-address
turn limits are lifted (all turns come from one demo visitor on one address)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from bench import _bare, _harness, _processes
from bench._chat import Client, TurnFailed
from bench._harness import Figure, Goal, Run
from devstack import processes

PEAK_CONCURRENCY = 32
PEAK_SECONDS = 8.0
REFUND_RATE = 1.0  # about 4 Stripe requests/s, under the gateway's 25/s limiter
REFUNDS = 34  # per run: three runs pool over 100 samples for a p99
CHARGE_MINOR = 100
REFUND_SETTLE_SECONDS = 3.0
STATUS = "What's my subscription status?"
IDLE_SECONDS = 5.0
RSS_GOAL = Goal("<= 100 MB", at_most=100.0)


@asynccontextmanager
async def _bare_pipeline(
    system: _processes.System, http: aiohttp.ClientSession
) -> AsyncIterator[_harness.Call]:
    """The bare pipeline's processes, warmed; yields one call through it."""
    grpc_port, http_port = processes.free_ports(2)
    keys = itertools.count()
    async with (
        _bare.process("grpc", "--database-url", system.database_url, port=grpc_port),
        _bare.process("http", "--target", f"127.0.0.1:{grpc_port}", port=http_port),
    ):
        url = f"http://127.0.0.1:{http_port}/"

        async def call() -> None:
            body = next(keys).to_bytes(4, "big")
            async with http.post(url, data=body) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                await response.json()

        for _ in range(50):  # warm: connections, pools
            await call()
        yield call


async def _status(client: Client, system: _processes.System) -> dict[str, Any]:
    conversations = itertools.cycle(range(PEAK_CONCURRENCY))

    async def turn() -> None:
        answer = await client.turn("alice", STATUS, f"status-{next(conversations)}")
        if "Growth" not in answer["reply"] or answer.get("escalated"):
            raise TurnFailed(answer["reply"][:200])

    for _ in range(PEAK_CONCURRENCY):  # every conversation opened; the visitor linked
        await turn()
    await client.clear_stripe_requests()
    async with system.usage() as usage:
        peak = await _harness.closed_loop(turn, PEAK_CONCURRENCY, PEAK_SECONDS)
    peak_stripe = await client.stripe_requests()
    rate = _harness.half_rate(peak)
    await client.clear_stripe_requests()
    steady = await _harness.fixed_rate(turn, rate, _harness.seconds_for_samples(rate))
    return {
        "peak": peak,
        "rate": rate,
        "steady": steady,
        "stripe": peak_stripe,
        "steady_stripe": await client.stripe_requests(),
        "cost": usage[0].per_operation(peak.completed + peak.failed),
    }


async def _refunds(
    client: Client, system: _processes.System
) -> tuple[_harness.Stats, int, dict[str, Any]]:
    await client.raise_refund_cap(10_000_000)
    charges = await client.charges("alice@example.com", REFUNDS, CHARGE_MINOR)
    # The charges' webhooks delivered and taken into the mirror first: a customer asks about
    # a charge seconds after it was made, not while its webhook is still on the way.
    await client.flush_webhooks()
    await asyncio.sleep(REFUND_SETTLE_SECONDS)
    numbers = iter(range(REFUNDS))
    latencies: list[float] = []

    async def refund() -> None:
        number = next(numbers)
        conversation = f"refund-{number}"
        asked = await client.turn("alice", f"refund {charges[number]}", conversation)
        if "Shall I go ahead?" not in asked["reply"]:
            raise TurnFailed(asked["reply"][:200])
        started = time.perf_counter()
        done = await client.turn("alice", "yes", conversation)
        latencies.append(time.perf_counter() - started)
        if "refunded $1" not in done["reply"]:
            raise TurnFailed(done["reply"][:200])

    await client.clear_stripe_requests()
    async with system.usage() as usage:
        stats = await _harness.fixed_rate(refund, REFUND_RATE, REFUNDS / REFUND_RATE)
    requests = await client.stripe_requests()
    # Only the "yes" turn is timed (the ask before it is not part of the figure).
    timed = _harness.Stats(
        stats.completed, stats.failed, stats.seconds, tuple(latencies), stats.errors
    )
    # Per refund pair: the ask ("refund ch_...") and the confirmed "yes".
    return timed, requests, usage[0].per_operation(stats.completed + stats.failed)


async def run() -> Run:
    async with (
        _processes.running(_processes.edge_limits_lifted()) as system,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        client = Client(system, http)
        warm_seconds = await client.wait_mirror_warm()
        # What the processes spend doing nothing asked of them (workers polling, probes): the
        # floor under every per-operation cost below.
        async with system.usage() as idle:
            await asyncio.sleep(IDLE_SECONDS)
        async with _bare_pipeline(system, http) as bare:
            baseline = await _harness.closed_loop(bare, PEAK_CONCURRENCY, PEAK_SECONDS)
            status = await _status(client, system)
            peak: _harness.Stats = status["peak"]
            steady: _harness.Stats = status["steady"]
            baseline_steady = await _harness.fixed_rate(
                bare, status["rate"], _harness.seconds_for_samples(status["rate"])
            )
        refunds, refund_requests, refund_cost = await _refunds(client, system)
        memory = system.memory()
        exited = system.exited()
    figures = [
        Figure(
            "status_peak_per_second",
            f"status turns/s, {PEAK_CONCURRENCY} callers (bare: HTTP -> gRPC -> one query)",
            round(peak.per_second, 1),
            "/s",
            baseline=round(baseline.per_second, 1),
            goal=Goal(">= 0.2x baseline", at_least=0.2, on_ratio=True),
        ),
        Figure(
            "status_peak_failed",
            "status turns failed at peak",
            peak.failed,
            "",
            goal=Goal("0", at_most=0),
        ),
        Figure(
            "status_peak_success",
            "status turns succeeded at peak, share",
            round(peak.success_share, 4),
        ),
        Figure(
            "status_peak_stripe",
            "Stripe requests during the peak (warm mirror)",
            status["stripe"],
            "",
            goal=Goal("0", at_most=0),
        ),
        _harness.tail_figure(
            "status_peak_tail", "status turn latency at peak", peak, baseline=baseline
        ),
        Figure("status_half_rate", "half the measured peak (fixed rate)", status["rate"], "/s"),
        _harness.tail_figure(
            "status_half_tail",
            "status turn latency at half the peak",
            steady,
            goal=Goal("<= 100 ms", at_most=100.0),
            baseline=baseline_steady,
        ),
        Figure(
            "status_half_failed",
            "status turns failed at half the peak",
            steady.failed,
            "",
            goal=Goal("0", at_most=0),
        ),
        _harness.tail_figure(
            "refund_yes_tail",
            f'confirmed refund ("yes") turn at {REFUND_RATE:.0f}/s',
            refunds,
            goal=Goal("<= 300 ms", at_most=300.0),
        ),
        Figure(
            "refund_failed", "refund pairs failed", refunds.failed, "", goal=Goal("0", at_most=0)
        ),
        *(
            Figure(
                f"rss_{name}",
                f"peak RSS (VmHWM) of {name}",
                found["peak_rss_mb"],
                "MB",
                goal=RSS_GOAL,
            )
            for name, found in memory.items()
        ),
    ]
    details = {
        "mirror_warm_after_seconds": warm_seconds,
        "status_peak": peak.as_dict(),
        "status_peak_baseline": baseline.as_dict(),
        "status_half_rate": {"rate": status["rate"], **steady.as_dict()},
        "status_half_rate_baseline": baseline_steady.as_dict(),
        "stripe_requests_at_half_rate": status["steady_stripe"],
        "refund_yes": refunds.as_dict(),
        "stripe_requests_per_refund_pair": round(refund_requests / max(1, refunds.completed), 2),
        "idle_cpu_ms_per_second": idle[0].per_operation(round(IDLE_SECONDS))["cpu_ms"],
        "idle_db_transactions_per_second": round(idle[0].transactions / IDLE_SECONDS, 1),
        "cost_per_status_turn_at_peak": status["cost"],
        "cost_per_refund_pair": refund_cost,
        "memory_mb": memory,
        "processes_exited": exited,
        "settings_changed": _processes.EDGE_LIMITS_LIFTED,
    }
    return Run(figures, details)
