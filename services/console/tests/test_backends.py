"""A service that cannot be reached reads as "the <service> service is unavailable" on the
page, and a refusal carries its reason; never a trace."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from askvault.policy.v1 import policy_pb2
from console.backends import POLICY, Backends, CallFailed
from console.settings import ConsoleSettings
from runtime import testing


async def test_an_unreachable_service_is_named_on_the_page() -> None:
    with testing.refused_port() as port:
        settings = testing.make_settings(
            ConsoleSettings,
            "",
            workspace_id="ws",
            oidc_discovery_url="http://127.0.0.1:1/.well-known/openid-configuration",
            session_keys=Fernet.generate_key().decode(),
            policy_target=f"127.0.0.1:{port}",
            edge_url=f"http://127.0.0.1:{port}",
            rpc_deadline_seconds=2.0,
        )
        backends = Backends.open(settings)
        try:
            with pytest.raises(CallFailed) as refused:
                await backends.call(
                    POLICY,
                    backends.policy.GetBounds,
                    policy_pb2.GetBoundsRequest(workspace_id="ws"),
                    "token",
                )
            assert refused.value.code == "UNAVAILABLE"
            assert refused.value.text.startswith("The policy service is unavailable")
            with pytest.raises(CallFailed) as unreachable:
                await backends.edge_get("/v1/admin/outcomes", {}, "token")
            assert unreachable.value.text.startswith("The edge service is unavailable")
        finally:
            await backends.close()


def test_a_refusal_reads_with_its_reason() -> None:
    failure = CallFailed(POLICY, "FAILED_PRECONDITION", "SAME_ADMIN", "a second admin must approve")
    assert failure.text == "The policy service refused: a second admin must approve [SAME_ADMIN]"
