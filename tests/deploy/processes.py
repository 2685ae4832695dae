"""Services started as real processes (``python -m <service>``), as a pod runs them."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import grpc_typing
from runtime.testing import admin_environment, admin_metadata

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# One audit MAC key for every policy replica of a run: replicas append to the same chains.
_AUDIT_MAC_KEYS = f"m1:{_key()}"

# What each gRPC service needs beyond DATABASE_URL to start (its required settings).
REQUIRED_SETTINGS: dict[str, Callable[[], dict[str, str]]] = {
    "identity": lambda: {
        "SECRETS_ENCRYPTION_KEYS": f"k1:{_key()}",
        "ASSERTION_SIGNING_KEYS": f"a1:{_key()}",
    },
    "policy": lambda: {"AUDIT_MAC_KEYS": _AUDIT_MAC_KEYS},
    "notifier": dict,
    "billing_gateway": lambda: {"SECRETS_ENCRYPTION_KEYS": f"k1:{_key()}"},
}


def _read_call(service: str) -> Callable[[grpc.aio.Channel], Any]:
    """A cheap read RPC of the service that touches its database: the load of the tests."""
    metadata = admin_metadata()
    if service == "identity":
        return lambda channel: identity_pb2_grpc.IdentityServiceStub(channel).GetVerificationKeys(
            identity_pb2.GetVerificationKeysRequest(), timeout=10, metadata=metadata
        )
    if service == "policy":
        return lambda channel: policy_pb2_grpc.PolicyServiceStub(channel).GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id="ws_drain"), timeout=10, metadata=metadata
        )
    if service == "notifier":
        return lambda channel: notifier_pb2_grpc.NotifierServiceStub(channel).ListMessages(
            notifier_pb2.ListMessagesRequest(
                workspace_id="ws_drain", contact_id="contact_drain", page_size=5
            ),
            timeout=10,
            metadata=metadata,
        )
    if service == "billing_gateway":
        return lambda channel: billing_pb2_grpc.BillingGatewayServiceStub(channel).GetRecoveryStats(
            billing_pb2.GetRecoveryStatsRequest(workspace_id="ws_drain"),
            timeout=10,
            metadata=metadata,
        )
    raise ValueError(service)


READ_CALLS = {name: _read_call(name) for name in REQUIRED_SETTINGS}


def environment(
    service: str, database_url: str, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """The environment of one replica: required settings, quick probes, no fork, and port 0:
    the process binds a free port itself and prints it (a port found free here and released
    could be taken by another process before the replica binds it)."""
    return {
        **(dict(os.environ) if base is None else dict(base)),
        "DATABASE_URL": database_url,
        # The replica migrates with the same DSN (a base environment, such as the local
        # stack's, may name another owner).
        "MIGRATION_DATABASE_URL": database_url,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": "0",
        **admin_environment(),
        "HEALTH_PROBE_INTERVAL_SECONDS": "0.2",
        "LOG_LEVEL": "WARNING",
        "GRPC_ENABLE_FORK_SUPPORT": "false",
        **REQUIRED_SETTINGS[service](),
        **extra,
    }


@dataclass
class Replica:
    """One running replica."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def health_status(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        answer = await grpc_typing.health_stub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return int(answer.status)


async def wait_serving(replica: Replica, limit_seconds: float = 60.0) -> None:
    """Waits until the replica's health is SERVING (or fails if it exited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    while loop.time() < deadline:
        if replica.process.returncode is not None:
            raise AssertionError(f"exited with {replica.process.returncode} before serving")
        try:
            if await health_status(replica.address) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"not SERVING after {limit_seconds} s")


async def listening_port(process: asyncio.subprocess.Process, limit_seconds: float = 60.0) -> int:
    """The port a service process bound, from the "<name> listening on <host:port>" line it
    prints to stdout once serving (its logs go to stderr)."""
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), limit_seconds)).decode()
    assert " listening on " in line, f"exited with {process.returncode} before serving: {line!r}"
    return int(line.rsplit(":", 1)[1])


@asynccontextmanager
async def replica(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT
) -> AsyncIterator[Replica]:
    """A started process, SERVING; killed on exit if it is still running."""
    process = await asyncio.create_subprocess_exec(
        *argv, env=dict(env), cwd=cwd, stdout=asyncio.subprocess.PIPE
    )
    try:
        started = Replica(process, await listening_port(process))
        await wait_serving(started)
        yield started
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def service_argv(service: str) -> list[str]:
    return [sys.executable, "-m", service]
