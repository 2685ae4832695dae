"""The conformance checks can fail: against a server that lets a caller without credential
through (service keys unset), the refusal check fails and names an RPC; with the keys set it
passes. (tests/devstack/test_demo.py runs every check against the local stack.)"""

from __future__ import annotations

import pytest

from askvault_clients import SigningKey
from conformance import grpc_checks
from conformance.report import CheckFailed
from conformance.target import Target, Visitor
from runtime import testing, testing_keys
from tests.registry import SERVICES


def _target(address: str) -> Target:
    return Target(
        edge_url="http://127.0.0.1:9",
        grpc={"policy": address},
        workspace_id="ws_conformance",
        visitor=Visitor("visitor", "", b"secret"),
        service_key=SigningKey.from_pem(testing_keys.signing_key("edge").pem(), "edge"),
    )


@pytest.mark.parametrize("keys_set", [False, True], ids=["keys unset", "keys set"])
async def test_the_refusal_check_fails_where_a_caller_without_credential_gets_through(
    database_url: str, keys_set: bool
) -> None:
    entry = next(entry for entry in SERVICES if entry.name == "policy")
    keys = {"service_public_keys": testing_keys.public_keys()} if keys_set else {}
    service, settings = entry.build(database_url, **keys)
    async with testing.running(service, settings) as running:
        target = _target(running.address)
        if keys_set:
            assert "UNAUTHENTICATED" in await grpc_checks.refusals_without_credential(
                target, "policy"
            )
        else:
            with pytest.raises(CheckFailed, match=r"not UNAUTHENTICATED|answered a caller"):
                await grpc_checks.refusals_without_credential(target, "policy")
        # Either way, every RPC's refusal of an empty request names its reason.
        assert "RPCs refused" in await grpc_checks.refusals_of_empty_requests(target, "policy")
