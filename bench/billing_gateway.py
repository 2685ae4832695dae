"""Billing gateway: Stripe webhook ingestion (HTTP -> IngestStripeEvent -> verify -> one
durable INSERT) events per second with concurrent senders, beside a same-run baseline of a
bare aiohttp -> grpc.aio -> one asyncpg INSERT path. Every event is unique and the stored
rows are counted afterwards: none may be lost."""

from __future__ import annotations

import base64
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from bench import _harness
from billing_gateway.accounts import key_binding, secret_binding
from billing_gateway.domain import signatures
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from runtime import testing
from runtime.secretbox import SecretBox

CONCURRENCY = 32
SECONDS = 6.0
WORKSPACE = "ws_bench"
SIGNING_SECRET = "whsec_bench_0123456789abcdef"  # noqa: S105 - benchmark only
_ids = itertools.count()


def _event() -> tuple[bytes, str]:
    """A unique, signed ~1 KB event."""
    payload = json.dumps(
        {
            "id": f"evt_bench_{os.getpid()}_{next(_ids)}",
            "object": "event",
            "type": "invoice.paid",
            "created": int(time.time()),
            "data": {"object": {"id": "in_bench", "object": "invoice", "pad": "x" * 800}},
        }
    ).encode()
    return payload, signatures.sign(payload, SIGNING_SECRET, int(time.time()))


@asynccontextmanager
async def _http_front(
    forward: Callable[[bytes, str], Awaitable[None]],
) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        await forward(await request.read(), request.headers.get("Stripe-Signature", ""))
        return web.Response(text="ok")

    front = web.Application()
    front.router.add_post("/hook", handle)
    runner = web.AppRunner(front, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def _drive(url: str) -> _harness.Stats:
    async with aiohttp.ClientSession() as session:

        async def post() -> None:
            payload, header = _event()
            async with session.post(url, data=payload, headers={"Stripe-Signature": header}) as r:
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")

        return await _harness.closed_loop(post, CONCURRENCY, SECONDS)


class _InsertServicer(health_pb2_grpc.HealthServicer):
    """The baseline's gRPC hop: one INSERT per call."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        async with self._pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO bench_baseline (event_id) VALUES ($1)", request.service
            )
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _baseline(database_url: str) -> tuple[_harness.Stats, int]:
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
    assert pool is not None
    await pool.execute("CREATE TABLE bench_baseline (event_id text PRIMARY KEY, payload bytea)")
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(_InsertServicer(pool), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def forward(body: bytes, header: str) -> None:
                await stub.Check(health_pb2.HealthCheckRequest(service=f"b{next(_ids)}"))

            async with _http_front(forward) as url:
                stats = await _drive(url)
        stored = int(await pool.fetchval("SELECT count(*) FROM bench_baseline"))
    finally:
        await server.stop(None)
        await pool.close()
    return stats, stored


async def _connect_workspace(database_url: str, box: SecretBox) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO billing_gateway.accounts (workspace_id, secret_key_ciphertext)"
            " VALUES ($1, $2)",
            WORKSPACE,
            box.seal(b"sk_test_bench", key_binding(WORKSPACE)),
        )
        await connection.execute(
            "INSERT INTO billing_gateway.webhook_secrets (workspace_id, secret_id, ciphertext)"
            " VALUES ($1, 'we_bench', $2)",
            WORKSPACE,
            box.seal(SIGNING_SECRET.encode(), secret_binding(WORKSPACE, "we_bench")),
        )
    finally:
        await connection.close()


async def run() -> dict[str, Any]:
    async with _harness.fresh_database() as database_url:
        baseline, baseline_stored = await _baseline(database_url)
        keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
        settings = testing.make_settings(
            BillingGatewaySettings,
            database_url,
            secrets_encryption_keys=keys,
            run_workers=False,
            database_pool_max_size=10,
        )
        async with testing.running(BillingGatewayService(settings), settings) as running:
            await _connect_workspace(database_url, SecretBox(keys))
            async with grpc.aio.insecure_channel(running.address) as channel:
                stub = billing_pb2_grpc.BillingGatewayServiceStub(channel)

                async def forward(body: bytes, header: str) -> None:
                    await stub.IngestStripeEvent(
                        billing_pb2.IngestStripeEventRequest(
                            workspace_id=WORKSPACE, payload=body, signature_header=header
                        )
                    )

                async with _http_front(forward) as url:
                    ours = await _drive(url)
            stored = int(
                await running.pool.fetchval(
                    "SELECT count(*) FROM stripe_events WHERE workspace_id = $1", WORKSPACE
                )
            )
        rss = _harness.rss_mb()
    return {
        "scenario": f"webhook ingestion over HTTP, {CONCURRENCY} senders (one process)",
        **ours.as_dict(),
        "stored_events": stored,
        "lost_events": ours.completed - stored,
        **baseline.as_dict("baseline_http_grpc_insert_"),
        "baseline_stored": baseline_stored,
        "ratio_to_baseline": _harness.ratio(ours.per_second, baseline.per_second),
        "rss_mb_client_and_server": rss,
    }
