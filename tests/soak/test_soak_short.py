"""The soak's machinery for a few seconds (``python -m soak`` with 3-second intervals): the
whole system as processes, every intent, the report's per-interval rows, its verdict and the
exit status that follows from it. The criteria themselves are tested in test_verdict.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness_runs import run_module

pytestmark = [pytest.mark.slow, pytest.mark.soak]

# The stack starts in 15-40 s (the machine's load), 12 s of load, settling and reconciling.
RUN_LIMIT_SECONDS = 180
INTERVALS = 4
# Every intent the mix says; the report's rows show the edge read each one.
INTENTS = {
    "status",
    "invoices",
    "refund",
    "change_plan",
    "payment_failed",
    "retry_payment",
    "cancel",
    "undo",
    "human",
    "yes",
    "whatsapp_opt_in",
}


async def test_a_short_soak_reports_every_interval_and_its_verdict(tmp_path: Path) -> None:
    returncode, printed = await run_module(
        "soak",
        [
            "--minutes",
            str(INTERVALS * 3 / 60),
            "--warm-up-minutes",
            str(3 / 60),
            "--interval-seconds",
            "3",
            "--out",
            str(tmp_path / "results"),
            "--logs",
            str(tmp_path / "logs"),
        ],
        tmp_path / "soak-output.txt",
        RUN_LIMIT_SECONDS,
    )
    report = json.loads((tmp_path / "results" / "soak.json").read_text())
    markdown = (tmp_path / "results" / "soak.md").read_text()

    rows = report["intervals"]
    assert [row["interval"] for row in rows] == list(range(1, INTERVALS + 1)), printed
    assert [row["warm_up"] for row in rows] == [True] + [False] * (INTERVALS - 1)
    for row in rows:
        assert row["turns"] > 0, row
        for name in report["services_judged"]:
            assert row["processes"][name]["rss_mb"] > 0, (name, row)
            assert row["processes"][name]["sockets"] > 0, (name, row)
        # Each service connects as its own role and names its application (make run's way).
        assert row["db_connections"].get("askvault_billing_gateway_local/billing_gateway"), row
    assert set(report["services_judged"]) >= {"identity", "policy", "billing_gateway", "edge"}

    read = {intent for counts in report["intents_by_step"].values() for intent in counts}
    assert read >= INTENTS, report["intents_by_step"]
    assert report["reconciliation"]["Stripe refunds"] != "0 refunds, 0 minor units", report

    # The verdict follows from its checks, and the exit status from the verdict.
    checks = {check["name"]: check["passed"] for check in report["checks"]}
    assert {f"RSS growth {name}" for name in report["services_judged"]} <= set(checks)
    assert {"p99 drift of chat turns", "0 lost", "0 duplicated", "reconciliation clean"} <= set(
        checks
    )
    assert report["passed"] == all(checks.values())
    assert returncode == (0 if report["passed"] else 1), printed
    assert checks["0 lost"] and checks["0 duplicated"] and checks["reconciliation clean"], printed
    assert ("## Verdict: PASS" if report["passed"] else "## Verdict: FAIL") in markdown
