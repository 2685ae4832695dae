"""The console's own service credential grants nothing: the reads it shares with the services
(policy GetEscalation and GetBounds, the notifier's ListMessages) treat it as a caller
without one, whose admin credential the servicer checks, and it takes no part in a visitor's
flow or the enforcement point."""

from __future__ import annotations

import json

import grpc
import pytest

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from notifier.service import NotifierService
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import errors, service_auth, testing
from tests import system as in_process

CONSOLE = service_auth.SigningKey.generate("console")
KEYS = service_auth.PublicKeys.from_jwks(service_auth.jwks([CONSOLE]))


def _check(allowed: dict[str, frozenset[str]], service: str, method: str) -> str:
    policy = service_auth.CallerPolicy(KEYS, allowed)
    metadata = ((service_auth.HEADER, service_auth.issue(CONSOLE)),)
    return policy.check(f"/{service}/{method}", metadata)


@pytest.mark.parametrize(
    ("allowed", "service", "method"),
    [
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", "GetEscalation"),
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", "GetBounds"),
        (NotifierService.allowed_callers, "askvault.notifier.v1.NotifierService", "ListMessages"),
    ],
)
def test_the_console_reads_what_it_shows_as_an_admin_not_as_a_service(
    allowed: dict[str, frozenset[str]], service: str, method: str
) -> None:
    # "": not a service the RPC serves, so the servicer checks the admin's credential.
    assert _check(allowed, service, method) == ""


@pytest.mark.parametrize(
    ("allowed", "service", "method"),
    [
        (PolicyService.allowed_callers, "askvault.policy.v1.PolicyService", method)
        for method in ("Authorize", "Redeem", "Commit", "Release", "OpenEscalation")
    ]
    + [
        (NotifierService.allowed_callers, "askvault.notifier.v1.NotifierService", method)
        for method in ("Send", "GetMessage", "SetChannelConsent")
    ],
)
def test_the_console_takes_no_part_in_a_visitors_flow(
    allowed: dict[str, frozenset[str]], service: str, method: str
) -> None:
    with pytest.raises(errors.ServiceError) as refused:
        _check(allowed, service, method)
    assert refused.value.reason == "CALLER_NOT_ALLOWED"


async def test_the_reads_refuse_the_console_without_an_admin_credential(
    database_url: str,
) -> None:
    """Policy with service credentials on: the console's credential alone reads nothing."""
    keys = service_auth.jwks([CONSOLE])
    settings = testing.make_settings(
        PolicySettings,
        await testing.service_database_url(database_url, "policy"),
        migration_database_url=database_url,
        audit_mac_keys=f"a1:{in_process.random_key()}",
        service_public_keys=json.dumps(keys),
    )
    async with (
        testing.running(PolicyService(settings), settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        policy = policy_pb2_grpc.PolicyServiceStub(channel)
        console_only = ((service_auth.HEADER, service_auth.issue(CONSOLE)),)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await policy.GetBounds(
                policy_pb2.GetBoundsRequest(workspace_id="ws_console"), metadata=console_only
            )
        code, reason, _ = testing.error_details(refused.value)
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_REQUIRED")
        admin = testing.TEST_ADMIN_PROVIDER.issue("admin-a")
        answered = await policy.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id="ws_console"),
            metadata=(*console_only, ("authorization", f"Bearer {admin}")),
        )
        assert answered.defaults.refund_window.seconds > 0
