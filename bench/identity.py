"""Identity: VerifyVisitor calls per second with 64 callers, beside a bare grpc.aio server
answering a health check (the machine's ceiling for one Python gRPC hop) in the same run."""

from __future__ import annotations

import base64
import os
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from bench import _harness
from identity.domain.verification import compute_user_hash
from identity.service import IdentityService
from identity.settings import IdentitySettings
from runtime import testing

CONCURRENCY = 64
SECONDS = 8.0
SECRET = b"bench-secret-0123456789abcdef0123456789"


async def _bare_baseline() -> _harness.Stats:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            return await _harness.closed_loop(lambda: stub.Check(request), CONCURRENCY, SECONDS)
    finally:
        await server.stop(None)


async def run() -> dict[str, Any]:
    baseline = await _bare_baseline()
    async with _harness.fresh_database() as database_url:
        settings = testing.make_settings(
            IdentitySettings,
            database_url,
            secrets_encryption_keys=f"k1:{base64.b64encode(os.urandom(32)).decode()}",
            assertion_signing_keys=f"a1:{base64.b64encode(os.urandom(32)).decode()}",
            database_pool_max_size=10,
        )
        async with (
            testing.running(IdentityService(settings), settings) as running,
            grpc.aio.insecure_channel(running.address) as channel,
        ):
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            await stub.AddSecret(
                identity_pb2.AddSecretRequest(
                    workspace_id="ws_bench",
                    key_id="k1",
                    secret=SECRET,
                    idempotency_key="k1",
                    purpose=identity_pb2.SECRET_PURPOSE_USER_HASH,
                ),
                metadata=testing.admin_metadata(),
            )
            request = identity_pb2.VerifyVisitorRequest(
                workspace_id="ws_bench",
                user_id="visitor-1",
                user_hash=compute_user_hash(SECRET, "visitor-1"),
            )
            ours = await _harness.closed_loop(
                lambda: stub.VerifyVisitor(request), CONCURRENCY, SECONDS
            )
            rss = _harness.rss_mb()
    return {
        "scenario": f"VerifyVisitor, {CONCURRENCY} callers (client and server in one process)",
        **ours.as_dict(),
        **baseline.as_dict("baseline_bare_grpc_"),
        "ratio_to_baseline": _harness.ratio(ours.per_second, baseline.per_second),
        "rss_mb_client_and_server": rss,
    }
