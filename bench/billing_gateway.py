"""Billing gateway: Stripe webhook ingestion (HTTP -> IngestStripeEvent -> verify -> one
durable INSERT) events per second with concurrent senders, beside a same-run baseline of a
bare aiohttp -> grpc.aio -> one asyncpg INSERT path. Every event is unique and the stored
rows are counted afterwards: none may be lost. Client, HTTP front and gateway share one
process, the baseline's too (so the RSS is of all of them). No goal is set for this path in
issue 16; the system scenario measures it end to end."""

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

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from bench import _harness
from bench._harness import Figure, Goal, Run
from billing_gateway.accounts import key_binding, secret_binding
from billing_gateway.domain import signatures
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from runtime import testing
from runtime.secretbox import SecretBox

CONCURRENCY = 32
SECONDS = 6.0
WARM_EVENTS = 20
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

        for _ in range(WARM_EVENTS):  # warm: connections, pools
            await post()
        return await _harness.closed_loop(post, CONCURRENCY, SECONDS)


async def _baseline(database_url: str) -> tuple[_harness.Stats, int]:
    """The same front; its gRPC hop stores the raw event (one INSERT of id and payload)."""
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
    assert pool is not None
    await pool.execute("CREATE TABLE bench_baseline (event_id text PRIMARY KEY, payload bytea)")

    async def store(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await pool.execute(
            "INSERT INTO bench_baseline (event_id, payload) VALUES ($1, $2)",
            f"b{next(_ids)}",
            request,
        )
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Baseline", {"Store": grpc.unary_unary_rpc_method_handler(store)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/bench.Baseline/Store"
            )

            async def forward(body: bytes, header: str) -> None:
                await call(body)

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


async def run() -> Run:
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
    figures = [
        Figure(
            "per_second",
            f"events/s ingested, {CONCURRENCY} senders (bare: HTTP -> gRPC -> 1 INSERT)",
            round(ours.per_second, 1),
            "/s",
            baseline=round(baseline.per_second, 1),
        ),
        Figure("failed", "events refused or failed", ours.failed, "", goal=Goal("0", at_most=0)),
        Figure("success", "events acknowledged, share", round(ours.success_share, 4)),
        Figure(
            "lost",
            "acknowledged but not stored",
            ours.completed + WARM_EVENTS - stored,
            "",
            goal=Goal("0", at_most=0),
        ),
        _harness.tail_figure("tail", "ingestion latency at peak", ours, baseline=baseline),
        Figure("rss", "RSS of client + front + gateway (one process)", rss, "MB"),
    ]
    details = {
        "ingestion": {**ours.as_dict(), "stored": stored},
        "baseline_http_grpc_insert": {**baseline.as_dict(), "stored": baseline_stored},
        "rss_mb_client_and_server": rss,
    }
    return Run(figures, details)
