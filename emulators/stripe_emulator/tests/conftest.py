"""Fixtures: an emulator on an ephemeral port, the official SDK pointed at it, a webhook sink."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from stripe_emulator import app, seed
from stripe_emulator.app import RunningEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    running = await app.start()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def api_key() -> str:
    return f"sk_test_{uuid.uuid4().hex}"


def make_client(
    emulator: RunningEmulator, api_key: str, **options: Any
) -> tuple[stripe.StripeClient, stripe.AIOHTTPClient]:
    http_client = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        api_key, base_addresses={"api": emulator.url}, http_client=http_client, **options
    )
    return client, http_client


async def close_http(http_client: stripe.AIOHTTPClient) -> None:
    await http_client.close_async()  # type: ignore[no-untyped-call]


def error_code(error: stripe.StripeError) -> str | None:
    """The `code` of Stripe's error body (the SDK leaves it out on some error classes)."""
    body = error.json_body
    if not isinstance(body, dict):
        return None
    code = body.get("error", {}).get("code")
    return str(code) if code is not None else None


@pytest.fixture
async def client(emulator: RunningEmulator, api_key: str) -> AsyncIterator[stripe.StripeClient]:
    sdk, http_client = make_client(emulator, api_key)
    try:
        yield sdk
    finally:
        await close_http(http_client)


@pytest.fixture
async def demo(
    emulator: RunningEmulator,
) -> AsyncIterator[tuple[stripe.StripeClient, dict[str, Any]]]:
    """The SDK on the demo account, with the demo seed's summary."""
    summary = seed.seed_demo(emulator.state)
    sdk, http_client = make_client(emulator, seed.DEMO_API_KEY)
    try:
        yield sdk, summary
    finally:
        await close_http(http_client)


@dataclass
class WebhookSink:
    """A local HTTP endpoint that records what Stripe (the emulator) posts to it."""

    url: str = ""
    received: list[tuple[bytes, str]] = field(default_factory=list)
    # Status codes to answer, in order; when exhausted, 200.
    statuses: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((body, request.headers.get("Stripe-Signature", "")))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    sink = WebhookSink()
    receiver = web.Application()
    receiver.router.add_post("/hook", sink.handle)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    sink.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield sink
    finally:
        await runner.cleanup()


async def admin(emulator: RunningEmulator, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{emulator.url}/_emulator{path}", json=body) as response,
    ):
        assert response.status < 500, await response.text()
        return await response.json()
