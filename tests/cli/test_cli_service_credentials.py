"""The CLI against a policy server that checks service credentials, as the local stack and
production run it: the CLI sends none (an admin is not a service). Admin RPCs answer the
admin's credential alone; GetBounds and GetEscalation answer peer services only, so the CLI
says so, and `bounds get` / `escalations show` fall back on the admin RPCs
(ListBoundsChanges, ListEscalations)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from askvault_cli.main import app
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing, testing_keys
from tests import system as in_process

pytestmark = pytest.mark.slow

WORKSPACE = "ws_cli_keys"


async def test_admin_rpcs_need_no_service_credential(database_url: str, tmp_path: Path) -> None:
    settings = testing.make_settings(
        PolicySettings,
        await testing.service_database_url(database_url, "policy"),
        migration_database_url=database_url,
        audit_mac_keys=f"a1:{in_process.random_key()}",
        service_public_keys=testing_keys.public_keys(),
    )
    async with testing.running(PolicyService(settings), settings) as running:
        environment = {
            "ASKVAULT_POLICY_ADDR": running.address,
            "ASKVAULT_WORKSPACE": WORKSPACE,
            "ASKVAULT_ADMIN_TOKEN": testing.TEST_ADMIN_PROVIDER.issue("admin-ops"),
            "ASKVAULT_CONFIG_DIR": str(tmp_path),
            "COLUMNS": "250",
        }

        async def askvault(*args: str) -> Result:
            return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)

        listed = await askvault("--json", "bounds", "history")
        assert listed.exit_code == 0, listed.stderr
        assert json.loads(listed.stdout)["changes"] == []

        refused = await askvault("bounds", "get")
        assert refused.exit_code == 5
        assert "policy answers this RPC to its peer services only" in refused.stderr
        assert "SERVICE_CREDENTIAL_REQUIRED" in refused.stderr

        bounds_file = tmp_path / "bounds.json"
        bounds_file.write_text(
            json.dumps(
                {
                    "askvault_plan": "ASK_VAULT_PLAN_BUSINESS",
                    "refund_caps": [{"amount_minor": "1000", "currency": "usd"}],
                    "refund_window": "86400s",
                    "plan_changes_per_period": 1,
                    "resubscriptions_per_period": 1,
                    "cancellation_grace": "60s",
                    "counter_period": "COUNTER_PERIOD_CALENDAR_MONTH",
                    "confirm_refunds": True,
                    "confirm_plan_changes": True,
                }
            )
        )
        proposed = await askvault("--json", "bounds", "propose", "--from-json", str(bounds_file))
        assert proposed.exit_code == 0, proposed.stderr
        assert json.loads(proposed.stdout)["state"] == "BOUNDS_CHANGE_STATE_APPLIED"

        shown = await askvault("--json", "bounds", "get")
        assert shown.exit_code == 0, shown.stderr
        assert "newest applied change" in shown.stderr
        document = json.loads(shown.stdout)
        assert document["bounds"]["refund_caps"] == [{"amount_minor": "1000", "currency": "usd"}]
        assert document["defaults"] is None

        # Built on the same fallback, a later change keeps what is in force.
        tighter = await askvault("--json", "bounds", "propose", "--refund-window-days", "0")
        assert tighter.exit_code == 0, tighter.stderr
        assert json.loads(tighter.stdout)["proposed"]["plan_changes_per_period"] == 1

        unknown = await askvault("escalations", "show", "esc_unknown")
        assert unknown.exit_code == 8, unknown.stderr
        assert "esc_unknown not found" in unknown.stderr
