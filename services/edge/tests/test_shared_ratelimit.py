"""The edge's limits live in its database: windows that start at a key's first hit, a verified
turn counted against its contact and its customer only when both allow, and one budget for
every replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from edge import ratelimit
from edge import service as edge_service
from edge.settings import EdgeSettings
from runtime import database, testing

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await database.create_pool(database_url, "edge")
    yield created
    await created.close()


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_window_starts_at_the_keys_first_hit(pool: asyncpg.Pool) -> None:
    limiter = ratelimit.RateLimiter(pool, "test", 2, window_seconds=60)
    assert await limiter.allow("a", _at(59)) and await limiter.allow("a", _at(61))
    # A global window boundary at 60 does not refill the budget.
    assert not await limiter.allow("a", _at(62))
    assert await limiter.allow("b", _at(62))
    assert await limiter.allow("a", _at(119))
    assert await limiter.allow("a", _at(120))
    assert not await limiter.allow("a", _at(121))


async def test_verified_turns_count_against_contact_and_customer_only_when_both_allow(
    pool: asyncpg.Pool,
) -> None:
    limits = ratelimit.TurnLimits(
        pool, contact_per_minute=3, customer_per_minute=2, unverified_handoff_emails_per_hour=1
    )
    assert await limits.allow("ws", "contact_a", "cus_1")
    assert await limits.allow("ws", "contact_b", "cus_1")
    with pytest.raises(ratelimit.RateLimited) as refused:
        await limits.check("ws", "contact_a", "cus_1")
    assert refused.value.scope == "customer"
    # The refused turn was not counted against contact_a: two more fit its budget of 3.
    assert await limits.allow("ws", "contact_a", "cus_2")
    assert await limits.allow("ws", "contact_a", "")
    assert not await limits.allow("ws", "contact_a", "")
    # Another workspace's contact of the same id is another budget.
    assert await limits.allow("ws_other", "contact_a", "cus_1")


async def test_ended_windows_are_deleted(pool: asyncpg.Pool) -> None:
    limiter = ratelimit.RateLimiter(pool, "sweep", 1, window_seconds=60)
    for index in range(5):
        assert await limiter.allow(f"old{index}", datetime.now(UTC) - timedelta(minutes=5))
    limiter._last_cleanup -= ratelimit.CLEANUP_INTERVAL_SECONDS
    assert await limiter.allow("new")
    async with pool.acquire() as connection:
        keys = await connection.fetch("SELECT key FROM rate_limit_windows WHERE key LIKE 'sweep:%'")
    assert [row["key"] for row in keys] == ["sweep:new"]


async def test_two_edges_on_one_database_share_an_address_limit(database_url: str) -> None:
    config = testing.make_settings(
        EdgeSettings,
        await testing.service_database_url(database_url, "edge"),
        migration_database_url=database_url,
        http_host="127.0.0.1",
        http_port=0,
        address_requests_per_minute=3,
    )
    first = await edge_service.start(config)
    try:
        second = await edge_service.start(config)
        try:
            async with aiohttp.ClientSession() as http:
                answers = []
                for index in range(8):
                    edge = (first, second)[index % 2]
                    # Refused after the limit (400 for the empty body before it): no
                    # other service is asked either way.
                    async with http.post(f"{edge.url}/v1/access/check", json={}) as response:
                        answers.append(response.status)
                        if response.status == 429:
                            body = await response.json()
                            assert body["error"]["code"] == "RATE_LIMITED"
        finally:
            await second.stop(1.0)
    finally:
        await first.stop(1.0)
    # One budget of 3 for the address, whichever replica the requests reach.
    assert answers.count(429) == 5, answers
