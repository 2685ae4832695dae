"""An internal caller, run by tests/packaging/test_client_wheel.py with the Python of a fresh
virtualenv holding only the askvault-clients wheel and its dependencies. Prints one JSON
object of what it saw: argv is the policy target, the edge's key file, a forged key file
(another key under the same key id) and an admin's bearer token."""

from __future__ import annotations

import json
import sys
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import askvault_clients
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from askvault_clients import ServiceCredential, SigningKey, channel


def _get_bounds(target: str, credential: ServiceCredential | None, **kwargs: Any) -> str:
    with channel(target, credential=credential) as ch:
        stub = policy_pb2_grpc.PolicyServiceStub(ch)
        try:
            response = stub.GetBounds(policy_pb2.GetBoundsRequest(workspace_id="ws_test"), **kwargs)
        except grpc.RpcError as error:
            return str(error.code().name)
        return f"OK {response.defaults.workspace_id or response.bounds.workspace_id}"


def main() -> None:
    target, key_file, forged_key_file, admin_token = sys.argv[1:5]
    seen: dict[str, Any] = {"package": askvault_clients.__file__}
    try:
        import runtime  # noqa: F401

        seen["runtime_importable"] = True
    except ImportError:
        seen["runtime_importable"] = False
    with channel(target) as ch:
        # typeshed's HealthStub declares no RPCs.
        stub: Any = health_pb2_grpc.HealthStub(ch)
        health = stub.Check(health_pb2.HealthCheckRequest())
        seen["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    edge = ServiceCredential(SigningKey.from_file(key_file, "edge"))
    forged = ServiceCredential(SigningKey.from_file(forged_key_file, "edge"))
    seen["as_edge"] = _get_bounds(target, edge)
    seen["forged"] = _get_bounds(target, forged)
    seen["anonymous"] = _get_bounds(target, None)
    seen["as_admin"] = _get_bounds(
        target, None, metadata=(("authorization", f"Bearer {admin_token}"),)
    )
    seen["retried_reads"] = len(askvault_clients.service_config()["methodConfig"][1]["name"])
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
