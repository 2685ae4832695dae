"""The short chaos run (``python -m chaos --short``) as part of ``make test``: the whole
system as real processes, one round of kill -9, a PostgreSQL crash, Stripe faults and
webhooks three times out of order, then the reconciliation must find no difference."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


async def test_short_chaos_run_reconciles_without_differences(tmp_path: Path) -> None:
    # Its own process: the harness starts and kills processes, and runs its own PostgreSQL
    # (never the one in DATABASE_URL, which it does not read).
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chaos",
        "--short",
        "--logs",
        str(tmp_path / "logs"),
        cwd=ROOT,
        env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "reconciliation: no differences" in report, report
    # The scenario really ran: money moved and webhooks came back three times.
    assert "refunded" in report and "plan changed" in report, report
