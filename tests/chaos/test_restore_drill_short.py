"""The short restore drill (``python -m chaos.restore_drill --short``) as part of ``make
test``: a backup under load, more refunds and plan changes after it, a restore into a new
database; then nothing lost or repeated against Stripe, no message sent twice beyond the
bound of deploy/README.md, and an intact audit chain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

# Seconds the short drill may take: about a minute and a half on a quiet machine (most of it
# starting the stack twice); under the hung-test watchdog (conftest.py).
RUN_LIMIT_SECONDS = 280
STOP_SECONDS = 20


async def test_short_restore_drill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    output_file = tmp_path / "drill-output.txt"
    with output_file.open("wb") as output:
        # Its own process group: a drill that overstays is stopped with what it started.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chaos.restore_drill",
            "--short",
            "--logs",
            str(tmp_path / "logs"),
            "--report",
            str(tmp_path / "report"),
            cwd=ROOT,
            env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"},
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(process.wait(), timeout=RUN_LIMIT_SECONDS)
        except TimeoutError:
            pytest.fail(f"the short restore drill took over {RUN_LIMIT_SECONDS} s")
        finally:
            if process.returncode is None:
                await _stop_group(process)
    output_text = output_file.read_text(errors="replace")
    assert process.returncode == 0, output_text
    report = json.loads((tmp_path / "report" / "restore-drill.json").read_text())
    figures = report["figures"]
    # Nothing lost or repeated against Stripe, no message twice beyond the bound, the chain
    # verifies: every one of these is a difference, and there are none.
    assert report["differences"] == [], output_text
    assert figures["audit chain after the restore"]["intact"], output_text
    # The drill really had something to find: refunds and plan changes made after the
    # backup, each found again by reconciliation (without it they are differences).
    later = figures["operations succeeded after the backup (lost with the old database)"]
    assert later.get("refund", 0) > 0 and later.get("change_plan", 0) > 0, output_text
    assert figures["of those, found again in Stripe by reconciliation"] == later, output_text
    sent_before, sent_after = (
        int(n) for n in figures["emails sent before the backup / after it"].split(" / ")
    )
    assert sent_before > 0, output_text
    assert figures["emails sent again after the restore"] <= sent_after, output_text


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the drill's process group, then SIGKILL to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
