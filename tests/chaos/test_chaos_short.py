"""The short chaos run (``python -m chaos --short``) as part of ``make test``: the whole
system as real processes, one round of kill -9, a PostgreSQL crash, Stripe faults and
webhooks three times out of order, then the reconciliation must find no difference."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness_runs import run_module

pytestmark = pytest.mark.slow


# Seconds the short run may take: it takes about a minute; well under the hung-test watchdog
# (conftest.py), so that a stuck run fails here with its own output, not with the watchdog.
RUN_LIMIT_SECONDS = 200


async def test_short_chaos_run_reconciles_without_differences(tmp_path: Path) -> None:
    # Its own process: the harness starts and kills processes, and runs its own PostgreSQL
    # (never the one in DATABASE_URL, which it does not read).
    returncode, report = await run_module(
        "chaos",
        ["--short", "--logs", str(tmp_path / "logs")],
        tmp_path / "chaos-output.txt",
        RUN_LIMIT_SECONDS,
    )
    assert returncode == 0, report
    assert "reconciliation: no differences" in report, report
    # The scenario really ran: money moved and webhooks came back three times; cancellations
    # were scheduled (and undone or run), WhatsApp replies delivered, emails went dead.
    assert "refunded" in report and "plan changed" in report, report
    assert "cancellation scheduled" in report and "whatsapp delivered" in report, report
    assert "email dead" in report, report
