"""Status chat turns over HTTP past saturation, every service its own process (`python -m
<service>` as `make run` starts them, on the emulators) with the edge's and the services'
admission settings at their defaults (HTTP_MAX_IN_FLIGHT, HTTP_MAX_QUEUED,
HTTP_QUEUE_WAIT_SECONDS, GRPC_MAX_IN_FLIGHT). The saturation is measured first (32 callers
in a closed loop, as the edge scenario's peak), then turns are started at twice that rate
(open loop) for 10 s. Each turn is accepted (200 with the status answer), refused (503 or 429
with Retry-After and a JSON error body) or failed (anything else: a timeout, a dropped
connection, another status, an answer that is not the status, a hand-off). Reported: the
shares refused and failed, the p99 of the accepted turns beside the p99 at half the
saturation measured in the same run, how fast refusals come, and the accepted rate beside
the saturation. Changed from the defaults: the edge's per-visitor and per-address turn limits
are lifted (all turns come from one demo visitor on one address)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import _harness, _processes
from bench._chat import Client, TurnFailed
from bench._harness import Figure, Goal, Run, Stats

SATURATION_CONCURRENCY = 32
SATURATION_SECONDS = 8.0
OVERLOAD_FACTOR = 2.0
OVERLOAD_SECONDS = 10.0
CONVERSATIONS = 32
STATUS = "What's my subscription status?"
# The client's own bound on one turn: a turn not answered by then counts as failed.
TURN_TIMEOUT_SECONDS = 10.0


@dataclass
class Outcomes:
    """What became of the turns of an open-loop run; latencies in seconds from when each
    turn was due."""

    seconds: float = 0.0
    accepted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def started(self) -> int:
        return len(self.accepted) + len(self.refused) + len(self.failed)

    def share(self, part: int) -> float:
        return round(part / self.started, 4) if self.started else 0.0

    def accepted_stats(self) -> Stats:
        return Stats(len(self.accepted), 0, self.seconds, tuple(self.accepted))

    def refused_stats(self) -> Stats:
        return Stats(len(self.refused), 0, self.seconds, tuple(self.refused))

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "accepted": len(self.accepted),
            "refused": len(self.refused),
            "failed": len(self.failed),
            "accepted_p50_ms": self.accepted_stats().p50_ms,
            "first_failures": sorted(set(self.failed))[:3],
        }


async def _overload(client: Client, rate: float, seconds: float) -> Outcomes:
    """Turns started at ``rate`` for ``seconds``, each classified."""
    conversations = itertools.cycle(range(CONVERSATIONS))
    outcomes = Outcomes()

    async def one(due: float) -> None:
        try:
            status, retry_after, body = await asyncio.wait_for(
                client.post_turn("alice", STATUS, f"status-{next(conversations)}"),
                TURN_TIMEOUT_SECONDS,
            )
        except (TimeoutError, aiohttp.ClientError) as error:
            outcomes.failed.append(f"{type(error).__name__}: {error}"[:200])
            return
        took = time.perf_counter() - due
        if status == 200 and "Growth" in str(body.get("reply")) and not body.get("escalated"):
            outcomes.accepted.append(took)
        elif status in (429, 503) and retry_after.isdigit() and "code" in body.get("error", {}):
            outcomes.refused.append(took)
        else:
            outcomes.failed.append(f"HTTP {status}: {str(body)[:160]}")

    tasks = []
    started = time.perf_counter()
    for index in range(int(rate * seconds)):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    outcomes.seconds = time.perf_counter() - started
    return outcomes


async def run() -> Run:
    async with (
        _processes.running(_processes.edge_limits_lifted()) as system,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        client = Client(system, http)
        warm_seconds = await client.wait_mirror_warm()

        async def turn() -> None:
            answer = await client.turn("alice", STATUS, f"status-{next(conversations)}")
            if "Growth" not in answer["reply"] or answer.get("escalated"):
                raise TurnFailed(answer["reply"][:200])

        conversations = itertools.cycle(range(CONVERSATIONS))
        for _ in range(CONVERSATIONS):  # every conversation opened; the visitor linked
            await turn()
        saturation = await _harness.closed_loop(turn, SATURATION_CONCURRENCY, SATURATION_SECONDS)
        half_rate = _harness.half_rate(saturation)
        half = await _harness.fixed_rate(turn, half_rate, _harness.seconds_for_samples(half_rate))
        offered = round(max(1.0, saturation.per_second) * OVERLOAD_FACTOR, 1)
        overload = await _overload(client, offered, OVERLOAD_SECONDS)
        exited = system.exited()
    accepted = overload.accepted_stats()
    figures = [
        Figure(
            "overload_offered_per_second",
            f"offered status turns/s ({OVERLOAD_FACTOR:.0f}x the saturation)",
            offered,
            "/s",
        ),
        Figure(
            "overload_refused_share",
            f"turns refused (503/429 with Retry-After) at {OVERLOAD_FACTOR:.0f}x, share",
            overload.share(len(overload.refused)),
        ),
        Figure(
            "overload_failed_share",
            f"turns failed (timeout, dropped, error, hand-off) at {OVERLOAD_FACTOR:.0f}x, share",
            overload.share(len(overload.failed)),
            goal=Goal("0", at_most=0),
        ),
        _harness.tail_figure(
            "overload_accepted_tail",
            f"accepted status turn latency at {OVERLOAD_FACTOR:.0f}x the saturation",
            accepted,
            goal=Goal("<= 1000 ms", at_most=1000.0),
            baseline=half,
        ),
        _harness.tail_figure(
            "overload_refused_tail",
            f"time to a refusal at {OVERLOAD_FACTOR:.0f}x the saturation",
            overload.refused_stats(),
            goal=Goal("<= 1000 ms", at_most=1000.0),
        ),
        Figure(
            "overload_accepted_per_second",
            f"accepted status turns/s at {OVERLOAD_FACTOR:.0f}x (baseline: the saturation)",
            round(accepted.per_second, 1),
            "/s",
            baseline=round(saturation.per_second, 1),
            goal=Goal(">= 0.8x baseline", at_least=0.8, on_ratio=True),
        ),
    ]
    details = {
        "mirror_warm_after_seconds": warm_seconds,
        "saturation": saturation.as_dict(),
        "half_rate": {"rate": half_rate, **half.as_dict()},
        "overload": {"rate": offered, **overload.as_dict()},
        "processes_exited": exited,
        "settings_changed": _processes.EDGE_LIMITS_LIFTED,
    }
    return Run(figures, details)
