"""Edge: chat-turn latency over HTTP with every service and the Stripe emulator running in
this process. A status question and a confirmed refund (the "yes" that moves the money) at a
fixed rate below saturation, each beside the Stripe emulator's own handling time of the
requests those turns made (measured inside the emulator), and the peak throughput of status
turns with concurrent callers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from bench import _harness
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack, running_stack

# The gateway spends at most 25 Stripe requests per second per test-mode account (Stripe's
# own limit) and a turn makes several: the rates stay under that, or turns hand off.
STATUS_RATE = 4.0  # turns per second
REFUND_RATE = 1.0  # refunds per second (each is two turns: the ask and the timed "yes")
SECONDS = 8.0
PEAK_CONCURRENCY = 8
PEAK_SECONDS = 6.0
CHARGE_MINOR = 100  # $1 charges, so the refund cap is never the limit


class _EmulatorClock:
    """Wraps the emulator's aiohttp request handler: seconds spent handling /v1 requests."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.requests = 0

    def install(self, server: web.Server) -> None:
        inner = server.request_handler

        async def timed(request: web.BaseRequest) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                return await inner(request)
            finally:
                if request.path.startswith("/v1/"):
                    self.seconds += time.perf_counter() - started
                    self.requests += 1

        server.request_handler = timed  # type: ignore[assignment]
        # Keep-alive connections opened before (the gateway's pool) copied the old handler.
        for connection in list(server._connections):
            connection._request_handler = timed

    def mark(self) -> tuple[float, int]:
        return self.seconds, self.requests


def _ms(values: list[float], quantile: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    if quantile == 0.5:
        return round(statistics.median(ordered) * 1000, 2)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * 1000, 2)


async def _raise_refund_cap(stack: Stack) -> None:
    """A cap far above what the benchmark refunds (a loosening: two admins)."""
    current = await stack.policy.GetBounds(
        policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=5
    )
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.bounds)
    del bounds.refund_caps[:]
    bounds.refund_caps.append(common_pb2.Money(amount_minor=10_000_000, currency="usd"))
    proposed = await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key="bench-cap"
        ),
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
        await stack.policy.ApproveBoundsChange(
            policy_pb2.ApproveBoundsChangeRequest(
                workspace_id=WORKSPACE,
                change_id=proposed.change.change_id,
                idempotency_key="bench-cap-approve",
            ),
            metadata=testing.admin_metadata("admin-bench"),
            timeout=5,
        )


async def _charges(stack: Stack, count: int) -> list[str]:
    """``count`` fresh $1 charges on alice's card."""
    alice = stack.customer("alice@example.com")
    found = []
    for _ in range(count):
        intent = await stack.stripe.v1.payment_intents.create_async(
            {
                "amount": CHARGE_MINOR,
                "currency": "usd",
                "customer": alice["customer"],
                "payment_method": alice["payment_method"],
                "confirm": True,
            }
        )
        found.append(str(intent["latest_charge"]))
    return found


async def _timed_turns(
    stack: Stack,
    clock: _EmulatorClock,
    rate: float,
    count: int,
    turn: Callable[[int], Awaitable[tuple[float, float]]],
) -> dict[str, Any]:
    """Runs ``turn(i)`` at a fixed rate; each returns (turn seconds, emulator seconds)."""
    latencies: list[float] = []
    emulator: list[float] = []
    index = iter(range(count))

    async def call() -> None:
        took, in_emulator = await turn(next(index))
        latencies.append(took)
        emulator.append(in_emulator)

    requests_before = clock.requests
    stats = await _harness.fixed_rate(call, rate, count / rate)
    requests = clock.requests - requests_before
    return {
        "rate_per_second": rate,
        "completed": stats.completed,
        "failed": stats.failed,
        "p50_ms": _ms(latencies, 0.5),
        "p99_ms": _ms(latencies, 0.99),
        # The emulator's handling time is summed per turn; with turns overlapping, the
        # attribution is approximate (a concurrent turn's Stripe time may be counted).
        "stripe_emulator_p50_ms": _ms(emulator, 0.5),
        "stripe_emulator_p99_ms": _ms(emulator, 0.99),
        "stripe_requests_per_turn": round(requests / max(1, stats.completed), 2),
    }


async def run() -> dict[str, Any]:
    async with (
        _harness.fresh_database() as database_url,
        running_stack(
            database_url,
            visitor_turns_per_minute=1_000_000,
            address_requests_per_minute=1_000_000,
            customer_turns_per_minute=1_000_000,
            # As deployed: a workspace's terms from policy are read once, then cached.
            workspace_terms_ttl_seconds=30.0,
        ) as stack,
    ):
        return await _measure(stack)


async def _measure(stack: Stack) -> dict[str, Any]:
    clock = _EmulatorClock()
    emulator_server = _emulator_server(stack)
    clock.install(emulator_server)
    await _raise_refund_cap(stack)
    refund_count = int(REFUND_RATE * SECONDS)
    charges = await _charges(stack, refund_count)
    # Warm up: channels, pools, the visitor's link to its customer.
    for _ in range(5):
        await stack.turn("alice", "What's my subscription status?", conversation="warm")

    async def status_turn(index: int) -> tuple[float, float]:
        before, _ = clock.mark()
        started = time.perf_counter()
        answer = await stack.turn("alice", "What's my subscription status?", f"s{index}")
        took = time.perf_counter() - started
        if "Growth plan" not in answer["reply"]:
            raise RuntimeError(answer["reply"])
        return took, clock.mark()[0] - before

    async def refund_turn(index: int) -> tuple[float, float]:
        conversation = f"r{index}"
        asked = await stack.turn("alice", f"refund {charges[index]}", conversation)
        if "Shall I go ahead?" not in asked["reply"]:
            raise RuntimeError(asked["reply"])
        before, _ = clock.mark()
        started = time.perf_counter()
        done = await stack.turn("alice", "yes", conversation)
        took = time.perf_counter() - started
        if "refunded $1" not in done["reply"]:
            raise RuntimeError(done["reply"])
        return took, clock.mark()[0] - before

    status = await _timed_turns(stack, clock, STATUS_RATE, int(STATUS_RATE * SECONDS), status_turn)
    refund = await _timed_turns(stack, clock, REFUND_RATE, refund_count, refund_turn)
    refunds = await stack.refunds()

    async def peak_turn() -> None:
        answer = await stack.turn("alice", "What's my subscription status?", "peak")
        if "Growth plan" not in answer["reply"]:
            raise RuntimeError(answer["reply"])

    requests_before = clock.requests
    emulator_before = clock.seconds
    peak = await _harness.closed_loop(peak_turn, PEAK_CONCURRENCY, PEAK_SECONDS)
    stripe_requests = clock.requests - requests_before
    return {
        "status_turn": status,
        "confirmed_refund_turn": refund,
        "refunds_in_stripe": len(refunds),
        "status_peak": {
            **peak.as_dict(),
            "concurrency": PEAK_CONCURRENCY,
            "stripe_requests_per_turn": round(stripe_requests / max(1, peak.completed), 2),
            "stripe_emulator_ms_per_turn": round(
                (clock.seconds - emulator_before) * 1000 / max(1, peak.completed), 2
            ),
        },
        "ratio_status_p50_to_emulator_p50": _harness.ratio(
            status["p50_ms"], status["stripe_emulator_p50_ms"]
        ),
        "ratio_refund_p50_to_emulator_p50": _harness.ratio(
            refund["p50_ms"], refund["stripe_emulator_p50_ms"]
        ),
        "rss_mb": _harness.rss_mb(),
        "note": "every service, the emulators and the load generator share one process",
    }


def _emulator_server(stack: Stack) -> web.Server:
    server = stack.emulator_runner.server
    assert server is not None
    return server
