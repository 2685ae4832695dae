"""The run: start the stack, load it, inject the faults in turn, settle, reconcile, report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import stripe

from chaos import reconcile, stack
from chaos.load import Load
from chaos.webhooks import Replayer, signing_secret
from chaos.whatsapp import WhatsAppLoad

# The SMTP sink refuses this many messages for good (550 after their content) in each round:
# they go dead in the notifier's outbox, and the reconciliation finds each one there.
SINK_REFUSALS = 3

# Stripe faults, each held for a while under load: (what, rules for the emulator).
STRIPE_FAULTS: tuple[tuple[str, list[dict[str, Any]]], ...] = (
    (
        "Stripe 500 on refunds and subscription updates",
        [
            {"route": "POST /v1/refunds", "status": 500},
            {"route": "POST /v1/subscriptions/*", "status": 500},
        ],
    ),
    (
        "Stripe 503 everywhere, Stripe-Should-Retry: false",
        [{"route": "*", "status": 503, "should_retry": False}],
    ),
    (
        "Stripe 429 everywhere, Stripe-Should-Retry: true",
        [{"route": "*", "status": 429, "should_retry": True}],
    ),
    ("Stripe 3 s latency (beyond every deadline)", [{"route": "*", "latency_ms": 3000}]),
    ("Stripe drops connections", [{"route": "*", "drop": True}]),
    (
        "Stripe 500 with Stripe-Should-Retry: true",
        [{"route": "*", "status": 500, "should_retry": True}],
    ),
)


@dataclass(frozen=True)
class Shape:
    """How long and how hard a run is."""

    name: str
    customers: int
    chat_workers: int
    pause_seconds: float
    warm_up_seconds: float
    kills: tuple[str, ...]
    down_seconds: float
    after_seconds: float
    postgres_down_seconds: float
    fault_seconds: float
    rounds: int


SHORT = Shape(
    "short", 14, 3, 0.2, 3.0, ("billing_gateway", "notifier", "policy"), 1.0, 2.0, 2.0, 3.0, 1
)
LONG = Shape("long", 80, 4, 0.3, 10.0, stack.SERVICES, 3.0, 8.0, 5.0, 12.0, 2)


class Timeline:
    """What the scenario did and when, for the report."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.entries: list[str] = []

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.began:7.1f} s  {text}"
        self.entries.append(line)
        print(line, flush=True)

    async def step(self, text: str, action: Callable[[], Awaitable[Any]]) -> Any:
        self.note(text)
        return await action()


async def _faults(chaos: stack.ChaosStack, shape: Shape, timeline: Timeline, index: int) -> None:
    """One round: kill -9 each service and restart it, crash PostgreSQL, then Stripe faults
    (in the second round, a kill -9 happens during each Stripe fault)."""
    await timeline.step(
        f"SMTP sink: the next {SINK_REFUSALS} messages refused for good (550 at DATA)",
        lambda: _sink_refuses(chaos, SINK_REFUSALS),
    )
    for name in shape.kills:
        await timeline.step(f"kill -9 {name}", lambda name=name: chaos.kill9(name))  # type: ignore[misc]
        await asyncio.sleep(shape.down_seconds)
        seconds = await chaos.start(name)
        timeline.note(f"{name} ready again after {seconds:.1f} s")
        await asyncio.sleep(shape.after_seconds)
    await timeline.step("PostgreSQL crash (pg_ctl stop -m immediate)", chaos.crash_postgres)
    await asyncio.sleep(shape.postgres_down_seconds)
    await timeline.step("PostgreSQL start (crash recovery)", chaos.start_postgres)
    await asyncio.sleep(shape.after_seconds)
    await timeline.step(
        "webhooks: every event twice by the emulator, batches newest first",
        lambda: chaos.admin("/_emulator/webhooks/mode", {"duplicates": True, "out_of_order": True}),
    )
    for number, (what, rules) in enumerate(STRIPE_FAULTS):
        timeline.note(what)
        for rule in rules:
            await chaos.admin("/_emulator/faults", rule)
        if index > 0:
            victim = shape.kills[number % len(shape.kills)]
            await asyncio.sleep(shape.fault_seconds / 2)
            await timeline.step(f"  and kill -9 {victim}", lambda v=victim: chaos.kill9(v))  # type: ignore[misc]
            seconds = await chaos.start(victim)
            timeline.note(f"  {victim} ready again after {seconds:.1f} s")
            await asyncio.sleep(shape.fault_seconds / 2)
        else:
            await asyncio.sleep(shape.fault_seconds)
        await _clear_faults(chaos)
        await asyncio.sleep(shape.after_seconds / 2)


async def _sink_refuses(chaos: stack.ChaosStack, count: int) -> None:
    fault = {"code": 550, "message": "5.1.1 chaos: mailbox unavailable", "stage": "data"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{chaos.url('smtp_sink_http')}/faults", json={**fault, "count": count}
        ) as response,
    ):
        response.raise_for_status()


async def _clear_faults(chaos: stack.ChaosStack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{chaos.url('stripe_emulator')}/_emulator/faults") as response,
    ):
        response.raise_for_status()


async def run(shape: Shape, logs: Path) -> int:
    """The whole scenario; 0 when the reconciliation found no difference."""
    timeline = Timeline()
    timeline.note(f"chaos ({shape.name}): starting the stack; logs in {logs}")
    async with stack.running(logs) as chaos, aiohttp.ClientSession() as http:
        timeline.note(
            "stack up: " + ", ".join(f"{name}:{port}" for name, port in chaos.ports.items())
        )
        async with stack.seeded_stripe(chaos) as seeded:
            return await _scenario(
                chaos, shape, timeline, http, seeded.client, seeded.summary, seeded.api_key
            )


async def _scenario(
    chaos: stack.ChaosStack,
    shape: Shape,
    timeline: Timeline,
    http: aiohttp.ClientSession,
    client: stripe.StripeClient,
    summary: dict[str, Any],
    api_key: str,
) -> int:
    started_at = int(time.time())
    growth = str(summary["products"]["growth"]["prices"]["usd"])
    load = Load(chaos, http, client, growth)
    replayer = Replayer(chaos, http, await signing_secret(chaos), api_key)
    whatsapp = WhatsAppLoad(load)
    await chaos.admin("/_emulator/webhooks/mode", {"duplicates": True, "out_of_order": True})
    await timeline.step(
        f"making {shape.customers} Stripe customers", lambda: load.prepare(shape.customers)
    )
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(load.chat_worker(stop, shape.pause_seconds))
        for _ in range(shape.chat_workers)
    ]
    workers.append(asyncio.create_task(load.demo_worker(stop, shape.pause_seconds * 2)))
    workers.append(asyncio.create_task(load.stripe_worker(stop, 1.0)))
    workers.append(asyncio.create_task(replayer.run(stop, 1.0)))
    workers.append(asyncio.create_task(whatsapp.worker(stop, shape.pause_seconds * 5)))
    timeline.note(
        f"load: {shape.chat_workers} chat workers (cancellations racing their undo), demo "
        "customers, WhatsApp messages, Stripe activity, replayer"
    )
    try:
        await asyncio.sleep(shape.warm_up_seconds)
        for index in range(shape.rounds):
            timeline.note(f"round {index + 1} of {shape.rounds}")
            await _faults(chaos, shape, timeline, index)
    finally:
        stop.set()
        await _clear_faults(chaos)
        await asyncio.gather(*workers, return_exceptions=True)
        await load.finish_races(4 * stack.CANCELLATION_GRACE_SECONDS + 30.0)
    timeline.note("load stopped, faults cleared; settling")
    exited = chaos.exited()
    for name in exited:
        await chaos.start(name)
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        await chaos.admin("/_emulator/webhooks/flush", {"timeout": 30})
    await replayer.finish(30.0)
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        await chaos.admin("/_emulator/webhooks/flush", {"timeout": 30})
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        # The status webhooks the edge refused while the notifier was down, posted again.
        pending = await whatsapp.flush()
        if pending:
            timeline.note(f"{len(pending)} WhatsApp webhooks still not taken")
    left = await reconcile.settle_replaying(chaos, replayer, 90.0)
    # The expiry worker sweeps every 0.5 s: give reserved grants their slack once.
    await asyncio.sleep(reconcile.EXPIRY_SLACK_SECONDS / 2)
    timeline.note("settled" if not left else f"NOT settled: {left}")
    findings = await reconcile.reconcile(chaos, load, replayer, whatsapp, http, started_at)
    for name in exited:
        findings.differ(f"{name} exited on its own during the run")
    for what, count in left.items():
        findings.differ(f"after settling: {count} {what}")
    _write_turns(timeline, load, chaos.logs)
    findings.figures["customers made"] = len(load.customers)
    findings.figures["Stripe activity"] = load.stripe_pokes
    _print(timeline, findings)
    return 1 if findings.differences else 0


def _write_turns(timeline: Timeline, load: Load, logs: Path) -> None:
    """Every turn (seconds since the start, user, step, duration, outcome, reply) and the
    timeline, beside the process logs, to line failures up with the faults."""
    with (logs / "turns.jsonl").open("w") as handle:
        for turn in load.turns:
            record = {
                "at": round(turn.began - timeline.began, 2),
                "user": turn.user,
                "step": turn.step,
                "seconds": round(turn.seconds, 3),
                "outcome": turn.outcome,
                "reply": turn.reply,
            }
            handle.write(json.dumps(record) + "\n")
    (logs / "timeline.txt").write_text("\n".join(timeline.entries) + "\n")


def _print(timeline: Timeline, findings: reconcile.Findings) -> None:
    width = max(len(name) for name in findings.figures) + 2
    print("\n=== chaos report ===")
    for name, value in findings.figures.items():
        print(f"{name + ':':<{width}} {value}")
    if findings.differences:
        print(f"\n{len(findings.differences)} DIFFERENCES:")
        for difference in findings.differences:
            print(f"  - {difference}")
    else:
        print("\nreconciliation: no differences")
    print(f"({timeline.entries[-1].split()[0]} s in all)", flush=True)
