"""``python -m chaos.restore_drill [--short] [--report DIR]``: the restore drill.

Under chat and Stripe load, every service schema is dumped (pg_dump, one snapshot) while the
system keeps running; the load goes on, then the database is "lost": the services stop, the
dump is restored into a new database and the services start on it. The drill then proves
that what was in flight at the backup or happened after it is found again by reconciliation
with Stripe (refunds and plan changes neither lost nor repeated), that the outbox lost no
message and sent none again beyond its bound, and that the audit chain verifies.
Exit status 1 on any difference."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import stripe

from chaos import backup, drill_checks, reconcile, stack
from chaos.__main__ import until_terminated
from chaos.load import Load
from chaos.scenario import Timeline

# The database the dump is restored into (on the same server: a new database, as an
# operator restores next to the damaged one).
RESTORED_DATABASE = "askvault_restored"


@dataclass(frozen=True)
class Shape:
    """How long and how hard a drill is."""

    name: str
    customers: int
    chat_workers: int
    pause_seconds: float
    # Load before the backup, and after it until the database is lost.
    before_seconds: float
    after_seconds: float


SHORT = Shape("short", 6, 2, 0.1, 3.0, 3.0)
FULL = Shape("full", 30, 3, 0.2, 12.0, 15.0)


def overrides() -> dict[str, dict[str, str]]:
    """The chaos stack's intervals, and a mirror catch-up every 2 s: after the restore it
    reads Stripe's events since the backup's position (the default waits a minute)."""
    chosen = stack.overrides()
    chosen["billing_gateway"]["MIRROR_CATCH_UP_INTERVAL_SECONDS"] = "2"
    # The console restarts too: no fixed metrics port another stack may hold by then.
    chosen["console"] = {"METRICS_PORT": "0"}
    return chosen


@dataclass
class Report:
    """What the drill did and found (written as JSON and markdown)."""

    shape: str
    backup: dict[str, Any]
    in_flight_at_backup: dict[str, Any]
    before_loss: dict[str, Any]
    after_restore: dict[str, Any]
    figures: dict[str, Any]
    differences: list[str]
    timeline: list[str]
    restore_seconds: float
    services_ready_seconds: float
    settle_left: dict[str, int]


async def run(shape: Shape, logs: Path, report_dir: Path | None) -> int:
    timeline = Timeline()
    timeline.note(f"restore drill ({shape.name}): starting the stack; logs in {logs}")
    async with (
        stack.running(logs, overrides()) as chaos,
        aiohttp.ClientSession() as http,
        stack.seeded_stripe(chaos) as seeded,
    ):
        report = await _drill(chaos, shape, timeline, http, seeded.client, seeded.summary)
    _print(report)
    if report_dir is not None:
        _write(report, report_dir)
    return 1 if report.differences else 0


async def _drill(
    chaos: stack.ChaosStack,
    shape: Shape,
    timeline: Timeline,
    http: aiohttp.ClientSession,
    client: stripe.StripeClient,
    summary: dict[str, Any],
) -> Report:
    started_at = int(time.time()) - 1
    growth = str(summary["products"]["growth"]["prices"]["usd"])
    load = Load(chaos, http, client, growth)
    await timeline.step(
        f"making {shape.customers} Stripe customers", lambda: load.prepare(shape.customers)
    )
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(load.chat_worker(stop, shape.pause_seconds))
        for _ in range(shape.chat_workers)
    ]
    workers.append(asyncio.create_task(load.demo_worker(stop, shape.pause_seconds * 2)))
    workers.append(asyncio.create_task(load.stripe_worker(stop, 0.5)))
    timeline.note(f"load: {shape.chat_workers} chat workers, demo customers, Stripe activity")
    try:
        await asyncio.sleep(shape.before_seconds)
        dump = await timeline.step(
            "pg_dump of every service schema, under load",
            lambda: backup.dump(chaos.database_url, chaos.logs / "askvault.dump"),
        )
        timeline.note(f"backup done: {dump.size_bytes} bytes in {dump.seconds:.1f} s")
        await asyncio.sleep(shape.after_seconds)
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    timeline.note("load stopped; the old database settles (its state is the truth to compare)")
    await reconcile.settle(chaos, 30.0)
    before_loss = await drill_checks.snapshot(chaos.database_url, chaos.workspace_id)
    await timeline.step("the database is lost: every service stops", chaos.stop_services)
    server_url = chaos.database_url
    restored_url, restore_seconds = await timeline.step(
        f"pg_restore into a new database {RESTORED_DATABASE}",
        lambda: backup.restore(dump, server_url, RESTORED_DATABASE),
    )
    restored = await drill_checks.snapshot(restored_url, chaos.workspace_id)
    in_flight = await drill_checks.at_backup(restored_url, restored)
    ready = await timeline.step(
        "every service starts on the restored database",
        lambda: chaos.start_services_on(restored_url),
    )
    timeline.note(f"services ready after {ready:.1f} s; reconciliation runs")
    left = await _settle_after_restore(chaos)
    timeline.note("settled" if not left else f"NOT settled: {left}")
    after = await drill_checks.snapshot(restored_url, chaos.workspace_id)
    findings = reconcile.Findings()
    await drill_checks.money(findings, load, before_loss, restored, after, started_at)
    await drill_checks.outbox(findings, chaos, http, restored, before_loss, after)
    await drill_checks.audit_chain(findings, chaos)
    await reconcile.check_mirror(findings, load, after.records.mirrored)
    for what, count in left.items():
        findings.differ(f"after settling: {count} {what}")
    findings.figures["chat outcomes"] = dict(Counter(turn.outcome for turn in load.turns))
    findings.figures["audit entries: at the backup / before the loss / after the restore"] = (
        f"{restored.audit_entries} / {before_loss.audit_entries} / {after.audit_entries}"
    )
    timeline.note("compared")
    return Report(
        shape=shape.name,
        backup={
            "schemas": dump.schemas,
            "size_bytes": dump.size_bytes,
            "seconds": round(dump.seconds, 2),
            "tool": backup.tool("pg_dump"),
        },
        in_flight_at_backup=dataclasses.asdict(in_flight),
        before_loss={
            "operations": before_loss.operations_by_state(),
            "messages": before_loss.messages_by_status(),
            "audit entries": before_loss.audit_entries,
        },
        after_restore={
            "operations": after.operations_by_state(),
            "grants": after.grants_by_state(),
            "messages": after.messages_by_status(),
            "audit entries": after.audit_entries,
        },
        figures=findings.figures,
        differences=findings.differences,
        timeline=timeline.entries,
        restore_seconds=round(restore_seconds, 2),
        services_ready_seconds=round(ready, 2),
        settle_left=left,
    )


async def _settle_after_restore(chaos: stack.ChaosStack) -> dict[str, int]:
    """Until reconciliation and the mirror's catch-up have run past the restart and nothing
    moves: the in-flight operations' age exceeds RECONCILE_AFTER_SECONDS at once (they date
    from before the backup), the catch-up reads every event since the backup's position."""
    await asyncio.sleep(6.0)
    return await reconcile.settle(chaos, 60.0)


def _print(report: Report) -> None:
    print("\n=== restore drill report ===")
    for name, value in report.figures.items():
        print(f"{name}: {value}")
    print(f"in flight at the backup: {report.in_flight_at_backup}")
    if report.differences:
        print(f"\n{len(report.differences)} DIFFERENCES:")
        for difference in report.differences:
            print(f"  - {difference}")
    else:
        print("\nrestore drill: no differences")


def _write(report: Report, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(report)
    (directory / "restore-drill.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (directory / "restore-drill.md").write_text(_markdown(report))


def _markdown(report: Report) -> str:
    """The report for people: what the backup caught moving, what reconciliation found, the
    messages sent again and the audit chain; the procedure is in deploy/README.md."""
    verdict = "no differences" if not report.differences else "DIFFERENCES"
    lines = [
        "# Restore drill",
        "",
        f"`make restore-drill` ({report.shape} shape), one real run: **{verdict}**.",
        'Procedure and bounds: deploy/README.md, "Restoring from a backup".',
        "",
        "## Backup",
        "",
        f"- pg_dump (custom format) of the schemas {', '.join(report.backup['schemas'])}: "
        f"{report.backup['size_bytes']} bytes in {report.backup['seconds']} s, under load",
        f"- restored into a new database in {report.restore_seconds} s; every service ready "
        f"on it {report.services_ready_seconds} s after starting",
        "",
        "## In flight at the backup",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in report.in_flight_at_backup.items()]
    lines += ["", "## The old database just before it was lost", ""]
    lines += [f"- {name}: {value}" for name, value in report.before_loss.items()]
    lines += ["", "## The restored system after reconciliation", ""]
    lines += [f"- {name}: {value}" for name, value in report.after_restore.items()]
    lines += ["", "## Figures", ""]
    lines += [f"- {name}: {value}" for name, value in report.figures.items()]
    lines += ["", "## Differences", ""]
    lines += [f"- {text}" for text in report.differences] or ["none"]
    lines += ["", "## Timeline", "", "```", *report.timeline, "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.restore_drill", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a small drill (make test)")
    parser.add_argument("--logs", type=Path, default=None, help="directory for process logs")
    parser.add_argument("--report", type=Path, default=None, help="write restore-drill.json")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="askvault-restore-drill-"))
    shape = SHORT if args.short else FULL
    # SIGTERM (a test giving up on the drill) stops every process and the PostgreSQL it started.
    raise SystemExit(asyncio.run(until_terminated(run(shape, logs, args.report))))


if __name__ == "__main__":
    main()
