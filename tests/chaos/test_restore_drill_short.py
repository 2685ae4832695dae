"""The short restore drill (``python -m chaos.restore_drill --short``) as part of ``make
test``: a backup under load, more refunds and plan changes after it, a restore into a new
database; then nothing lost or repeated against Stripe, no message sent twice beyond the
bound of deploy/README.md, and an intact audit chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness_runs import run_module

pytestmark = pytest.mark.slow

# Seconds the short drill may take: about a minute and a half on a quiet machine (most of it
# starting the stack twice); under the hung-test watchdog (conftest.py).
RUN_LIMIT_SECONDS = 280


async def test_short_restore_drill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    returncode, output_text = await run_module(
        "chaos.restore_drill",
        ["--short", "--logs", str(tmp_path / "logs"), "--report", str(tmp_path / "report")],
        tmp_path / "drill-output.txt",
        RUN_LIMIT_SECONDS,
    )
    assert returncode == 0, output_text
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
