"""The CLI against a policy server that checks service credentials, as the local stack and
production run it: the CLI sends none (an admin is not a service). Admin RPCs answer the
admin's credential alone; GetBounds and GetEscalation, which the services read too, answer a
call without a service credential only with an admin's credential."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner, Result

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
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

        shown = await askvault("--json", "bounds", "get")
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["defaults"]["refund_window"], shown.stdout

        # A call with neither an admin's nor a service's credential is refused.
        async with grpc.aio.insecure_channel(running.address) as channel:
            policy = policy_pb2_grpc.PolicyServiceStub(channel)
            for call in (
                policy.GetBounds(policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE)),
                policy.GetEscalation(
                    policy_pb2.GetEscalationRequest(workspace_id=WORKSPACE, escalation_id="esc_x")
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                code, reason, _ = testing.error_details(refused.value)
                assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_REQUIRED")

        proposed = await askvault("--json", "bounds", "propose", "--refund-window-days", "0")
        assert proposed.exit_code == 0, proposed.stderr
        assert json.loads(proposed.stdout)["state"] == "BOUNDS_CHANGE_STATE_APPLIED"

        unknown = await askvault("escalations", "show", "esc_unknown")
        assert unknown.exit_code == 8, unknown.stderr
        assert "escalation not found" in unknown.stderr
