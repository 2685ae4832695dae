"""Identity as a real process: ``migrate``, ``serve`` with metrics, SIGTERM drains and exits."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sys
import tempfile
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from runtime import grpc_typing


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Starts tried before giving up on finding a metrics port nobody takes meanwhile.
_PORT_ATTEMPTS = 3


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRETS_ENCRYPTION_KEYS": f"k1:{base64.b64encode(os.urandom(32)).decode()}",
        "ASSERTION_SIGNING_KEYS": f"a1:{base64.b64encode(os.urandom(32)).decode()}",
        "GRPC_ENABLE_FORK_SUPPORT": "false",
        **extra,
    }


async def test_migrate_command_prepares_an_empty_database(empty_database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "identity", "migrate", env=_environment(empty_database_url)
    )
    assert await asyncio.wait_for(process.wait(), 60) == 0
    import asyncpg

    connection = await asyncpg.connect(empty_database_url)
    try:
        versions = await connection.fetch("SELECT version FROM identity.schema_migrations")
    finally:
        await connection.close()
    assert [row["version"] for row in versions] == [1, 2, 3, 4, 5]


@pytest.mark.integration
async def test_missing_required_setting_fails_at_start() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "identity",
        env=environment,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode != 0
    assert b"DATABASE_URL" in stderr


async def _start_serving(database_url: str) -> tuple[asyncio.subprocess.Process, str, int]:
    """``python -m identity`` on a port it binds itself (GRPC_PORT=0, its address read from
    its output) and a metrics port picked here: the Prometheus exporter cannot report a port
    of its own choosing, so a port taken in between is retried with another."""
    for _ in range(_PORT_ATTEMPTS):
        metrics_port = _free_port()
        # The logs go to a file: a pipe nobody reads would fill and stop the process.
        with tempfile.TemporaryFile() as logs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "identity",
                env=_environment(database_url, GRPC_PORT="0", METRICS_PORT=str(metrics_port)),
                stdout=asyncio.subprocess.PIPE,
                stderr=logs,
            )
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            if "identity listening on" in line:
                return process, line.split("listening on", 1)[1].strip(), metrics_port
            await asyncio.wait_for(process.wait(), 30)
            logs.seek(0)
            stderr = logs.read()
        assert b"Address already in use" in stderr, stderr.decode()[-2000:]
    raise AssertionError(f"no free metrics port in {_PORT_ATTEMPTS} attempts")


async def test_serves_metrics_and_exits_cleanly_on_sigterm(database_url: str) -> None:
    process, address, metrics_port = await _start_serving(database_url)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            health = await grpc_typing.health_stub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            keys = await identity_pb2_grpc.IdentityServiceStub(channel).GetVerificationKeys(
                identity_pb2.GetVerificationKeysRequest(), timeout=5
            )
        metrics = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
        )
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert len(keys.keys) == 1
    assert "askvault_rpc_server_calls" in metrics
    assert code == 0
