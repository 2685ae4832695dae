"""Fault injection through the admin endpoint, as the SDK experiences it."""

from __future__ import annotations

import time

import pytest
import stripe

from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.conftest import admin, close_http, error_code, make_client


async def test_forced_500_and_503(emulator: RunningEmulator, client: stripe.StripeClient) -> None:
    await admin(
        emulator, "POST", "/faults", {"route": "GET /v1/customers", "status": 500, "times": 1}
    )
    with pytest.raises(stripe.APIError) as failed:
        await client.v1.customers.list_async()
    assert failed.value.http_status == 500
    assert (await client.v1.customers.list_async()).data == []
    await admin(emulator, "POST", "/faults", {"route": "/v1/customers*", "status": 503})
    with pytest.raises(stripe.APIError) as unavailable:
        await client.v1.customers.create_async(params={"email": "x@example.com"})
    assert unavailable.value.http_status == 503
    await admin(emulator, "DELETE", "/faults")
    assert (await client.v1.customers.list_async()).data == []


async def test_rate_limit_with_and_without_should_retry(
    emulator: RunningEmulator, api_key: str
) -> None:
    client, http_client = make_client(emulator, api_key, max_network_retries=1)
    try:
        await admin(
            emulator, "POST", "/faults", {"route": "GET /v1/customers", "status": 429, "times": 1}
        )
        with pytest.raises(stripe.RateLimitError) as limited:
            await client.v1.customers.list_async()
        assert limited.value.http_status == 429
        assert error_code(limited.value) == "rate_limit"
        # With Stripe-Should-Retry: true the SDK retries once and the second attempt succeeds.
        await admin(
            emulator,
            "POST",
            "/faults",
            {"route": "GET /v1/customers", "status": 429, "should_retry": True, "times": 1},
        )
        assert (await client.v1.customers.list_async()).data == []
        assert (await admin(emulator, "GET", "/faults"))["faults"] == []
    finally:
        await close_http(http_client)


async def test_latency_and_dropped_connection(
    emulator: RunningEmulator, client: stripe.StripeClient
) -> None:
    await admin(
        emulator, "POST", "/faults", {"route": "GET /v1/products", "latency_ms": 300, "times": 1}
    )
    started = time.monotonic()
    await client.v1.products.list_async()
    assert time.monotonic() - started >= 0.3
    await admin(
        emulator, "POST", "/faults", {"route": "POST /v1/refunds", "drop": True, "times": 1}
    )
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.refunds.create_async(params={"charge": "ch_x"})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async(params={"charge": "ch_x"})


async def test_reset_forgets_everything(
    emulator: RunningEmulator, client: stripe.StripeClient
) -> None:
    await client.v1.customers.create_async(params={"email": "old@example.com"})
    await admin(emulator, "POST", "/reset")
    assert (await client.v1.customers.list_async()).data == []


async def test_request_log_counts_each_accounts_requests(
    emulator: RunningEmulator, client: stripe.StripeClient, api_key: str
) -> None:
    await client.v1.customers.create_async(params={"email": "log@example.com"})
    await client.v1.customers.list_async()
    await admin(emulator, "POST", "/faults", {"route": "GET /v1/prices", "status": 503})
    with pytest.raises(stripe.APIError):
        await client.v1.prices.list_async()
    logged = (await admin(emulator, "GET", f"/requests?api_key={api_key}"))["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in logged] == [
        ("POST", "/v1/customers", 200),
        ("GET", "/v1/customers", 200),
        ("GET", "/v1/prices", 503),
    ]
    assert all(r["request_id"].startswith("req_") for r in logged[:2])
    other = (await admin(emulator, "GET", "/requests?api_key=sk_test_someone_else"))["requests"]
    assert other == []
    await admin(emulator, "DELETE", "/requests")
    assert (await admin(emulator, "GET", "/requests"))["requests"] == []
