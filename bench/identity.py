"""Identity: VerifyVisitor calls per second with 64 callers (one known visitor, the
workspace's secret cached after the first call), beside a bare grpc.aio server answering a
health check with 64 callers (the machine's ceiling for one Python gRPC hop) in the same
run. Client and server share one process, the baseline's too (so the RSS is of both)."""

from __future__ import annotations

import base64
import os

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from bench import _harness
from bench._harness import Figure, Goal, Run
from identity.domain.verification import compute_user_hash
from identity.service import IdentityService
from identity.settings import IdentitySettings
from runtime import grpc_typing, testing

CONCURRENCY = 64
SECONDS = 6.0
SECRET = b"bench-secret-0123456789abcdef0123456789"


async def _bare_baseline() -> _harness.Stats:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = grpc_typing.health_stub(channel)
            request = health_pb2.HealthCheckRequest()
            for _ in range(50):  # warm, as ours is
                await stub.Check(request)
            return await _harness.closed_loop(lambda: stub.Check(request), CONCURRENCY, SECONDS)
    finally:
        await server.stop(None)


async def run() -> Run:
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
            for _ in range(50):  # warm: channel, pool, the secret cache
                await stub.VerifyVisitor(request)
            ours = await _harness.closed_loop(
                lambda: stub.VerifyVisitor(request), CONCURRENCY, SECONDS
            )
            rss = _harness.rss_mb()
    figures = [
        Figure(
            "per_second",
            f"VerifyVisitor/s, {CONCURRENCY} callers (bare: gRPC health check)",
            round(ours.per_second, 1),
            "/s",
            baseline=round(baseline.per_second, 1),
            goal=Goal(">= 0.5x baseline", at_least=0.5, on_ratio=True),
        ),
        Figure("failed", "calls failed", ours.failed, "", goal=Goal("0", at_most=0)),
        Figure("success", "calls succeeded, share", round(ours.success_share, 4)),
        _harness.tail_figure("tail", "VerifyVisitor latency at peak", ours, baseline=baseline),
        Figure("rss", "RSS of client + identity (one process)", rss, "MB"),
    ]
    details = {
        "verify_visitor": ours.as_dict(),
        "baseline_bare_grpc": baseline.as_dict(),
        "rss_mb_client_and_server": rss,
    }
    return Run(figures, details)
