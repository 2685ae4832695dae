"""The run: the stack as ``make run`` starts it (every service a process, each as its own
database role) on free ports, the fixed mixed load for the set time with a sample every
interval, then settle, count lost and duplicated, reconcile, judge and write the report."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chaos import reconcile, stack
from chaos.load import Load
from chaos.webhooks import Replayer, signing_secret
from chaos.whatsapp import WhatsAppLoad
from soak import ledger, report, sampling, verdict, workload

# The services the verdict holds to the RSS limit; the emulators and the local identity
# provider are sampled and reported too, but they keep what they are sent by design.
SERVICES = (*stack.SERVICES, "console")
SETTLE_SECONDS = 120.0


@dataclass(frozen=True)
class Plan:
    """How long, how often and how hard."""

    minutes: float
    warm_up_minutes: float
    interval_seconds: float
    shape: workload.Shape = field(default_factory=workload.Shape)

    @property
    def intervals(self) -> int:
        return max(round(self.minutes * 60 / self.interval_seconds), 1)

    @property
    def warm_up_intervals(self) -> int:
        return round(self.warm_up_minutes * 60 / self.interval_seconds)


def overrides() -> dict[str, dict[str, str]]:
    """The services' own intervals and timeouts (unlike chaos, nothing shortened); only the
    rate and send limits that would refuse a load generator's volume are lifted, and no
    metrics port is opened (several stacks may run side by side)."""
    common = {"METRICS_PORT": "0", "GRPC_HOST": "127.0.0.1"}
    chaos: dict[str, dict[str, str]] = {"console": {}, **stack.overrides()}
    limits = {
        "notifier": ("DEFAULT_CONTACT_HOURLY_LIMIT", "DEFAULT_WORKSPACE_HOURLY_LIMIT"),
        "edge": (
            "VISITOR_TURNS_PER_MINUTE",
            "ADDRESS_REQUESTS_PER_MINUTE",
            "CUSTOMER_TURNS_PER_MINUTE",
        ),
    }
    return {
        name: {**common, **{key: chaos[name][key] for key in limits.get(name, ())}}
        for name in chaos
    }


async def run(plan: Plan, logs: Path, out: Path) -> int:
    """The whole soak; 0 when every criterion holds. Writes ``out``/soak.json and soak.md."""
    if plan.intervals <= plan.warm_up_intervals:
        raise SystemExit(
            f"{plan.minutes} minutes leave no interval after a warm-up of {plan.warm_up_minutes}"
        )
    print(f"soak: {plan.minutes} min, warm-up {plan.warm_up_minutes} min; logs in {logs}")
    async with (
        stack.running(logs, process_overrides=overrides(), service_roles=True) as system,
        aiohttp.ClientSession() as http,
        stack.seeded_stripe(system) as seeded,
    ):
        growth = str(seeded.summary["products"]["growth"]["prices"]["usd"])
        mix = workload.Mix(Load(system, http, seeded.client, growth), plan.shape)
        result = await _soak(plan, system, mix, http, seeded.api_key)
    report.write(result, out)
    report.print_summary(result)
    return 0 if result.verdict.passed else 1


async def _soak(
    plan: Plan,
    system: stack.ChaosStack,
    mix: workload.Mix,
    http: aiohttp.ClientSession,
    api_key: str,
) -> report.Result:
    started_at = int(time.time())
    replayer = Replayer(system, http, await signing_secret(system), api_key)
    await mix.link_whatsapp(http)
    stop = asyncio.Event()
    feeder = asyncio.create_task(mix.feed_customers(stop))
    workers = [
        *(asyncio.create_task(mix.chat_worker(stop, n)) for n in range(plan.shape.chat_workers)),
        asyncio.create_task(mix.carol_worker(stop)),
        asyncio.create_task(mix.whatsapp_worker(stop, http)),
        asyncio.create_task(mix.load.stripe_worker(stop, plan.shape.stripe_seconds)),
        asyncio.create_task(replayer.run(stop, plan.shape.replay_seconds)),
    ]
    rows: list[report.Row] = []
    try:
        rows = await _sample(plan, system, mix)
    finally:
        stop.set()
        feeder.cancel()
        await asyncio.gather(feeder, *workers, return_exceptions=True)
    print("soak: load stopped; settling", flush=True)
    exited = system.exited()
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        await system.admin("/_emulator/webhooks/flush", {"timeout": 30})
    left = await reconcile.settle_replaying(system, replayer, SETTLE_SECONDS)
    await asyncio.sleep(reconcile.EXPIRY_SLACK_SECONDS / 2)
    # The soak's WhatsApp traffic is its own (workload.py), not chaos's WhatsAppLoad: the
    # flows' comparison expects no chaos WhatsApp questions, and the soak's ledger
    # (ledger.py) matches its messages with the emulator instead.
    findings = await reconcile.reconcile(
        system, mix.load, replayer, WhatsAppLoad(mix.load), http, started_at
    )
    for name in exited:
        findings.differ(f"{name} exited on its own during the soak")
    for what, count in left.items():
        findings.differ(f"after settling: {count} {what}")
    tally = await ledger.tally(mix, replayer, http, findings.differences)
    services = [name for name in SERVICES if name in system.children]
    judged = verdict.judge(
        [verdict.Interval(row.rss(), row.latencies) for row in rows],
        plan.warm_up_intervals,
        services,
        tally,
    )
    return report.Result(plan, rows, tally, judged, findings.figures, mix, services)


async def _sample(plan: Plan, system: stack.ChaosStack, mix: workload.Mix) -> list[report.Row]:
    """Sleeps to each interval's end, then samples every process, the database's connections
    and the turns completed in the interval."""
    began = time.monotonic()
    rows: list[report.Row] = []
    turns_seen = whatsapp_seen = 0
    for index in range(plan.intervals):
        await asyncio.sleep(max(began + (index + 1) * plan.interval_seconds - time.monotonic(), 0))
        turns = mix.load.turns[turns_seen:]
        posts = mix.whatsapp[whatsapp_seen:]
        turns_seen += len(turns)
        whatsapp_seen += len(posts)
        processes: dict[str, Any] = {
            name: sampling.sample_process(child.process.pid)
            for name, child in system.children.items()
            if child.process is not None
        }
        row = report.Row.of(
            index + 1,
            (time.monotonic() - began) / 60,
            turns,
            posts,
            processes,
            await sampling.database_connections(system.database_url),
            warm_up=index < plan.warm_up_intervals,
        )
        rows.append(row)
        print(row.line(), flush=True)
    return rows
