"""The short chaos run (``python -m chaos --short``) as part of ``make test``: the whole
system as real processes, one round of kill -9, a PostgreSQL crash, Stripe faults and
webhooks three times out of order, then the reconciliation must find no difference."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


# Seconds the short run may take: it takes about a minute; well under the hung-test watchdog
# (conftest.py), so that a stuck run fails here with its own output, not with the watchdog.
RUN_LIMIT_SECONDS = 200
# Seconds the run gets to stop its processes after SIGTERM before they are killed.
STOP_SECONDS = 20


async def test_short_chaos_run_reconciles_without_differences(tmp_path: Path) -> None:
    # Its own process: the harness starts and kills processes, and runs its own PostgreSQL
    # (never the one in DATABASE_URL, which it does not read). Its own process group too, so
    # that a run that overstays is stopped with every process it started.
    output_file = tmp_path / "chaos-output.txt"
    with output_file.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chaos",
            "--short",
            "--logs",
            str(tmp_path / "logs"),
            cwd=ROOT,
            env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"},
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(process.wait(), timeout=RUN_LIMIT_SECONDS)
        except TimeoutError:
            await _stop_group(process)
            report = output_file.read_text(errors="replace")
            pytest.fail(f"the short chaos run took over {RUN_LIMIT_SECONDS} s:\n{report}")
        finally:
            if process.returncode is None:
                await _stop_group(process)
    report = output_file.read_text(errors="replace")
    assert process.returncode == 0, report
    assert "reconciliation: no differences" in report, report
    # The scenario really ran: money moved and webhooks came back three times; cancellations
    # were scheduled (and undone or run), WhatsApp replies delivered, emails went dead.
    assert "refunded" in report and "plan changed" in report, report
    assert "cancellation scheduled" in report and "whatsapp delivered" in report, report
    assert "email dead" in report, report


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the run's process group (the harness stops what it started), then SIGKILL
    to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
