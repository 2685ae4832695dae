"""The hourly send limits are sliding windows: the sends of the last hour count, not those of
the clock hour, so a burst across an hour boundary cannot pass the limit twice over; a
refusal says when the window takes a send again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import message_store
from notifier.tests.conftest import WORKSPACE, Notifier
from runtime import testing

LIMIT = 5
BOUNDARY = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)


@pytest.fixture
async def connection(notifier: Notifier, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the notifier's migrated schema (the notifier fixture migrated it)."""
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "notifier"})
    yield connection
    await connection.close()


async def _burst(
    connection: asyncpg.Connection, scope: str, at: datetime, count: int
) -> list[bool]:
    return [
        await message_store.count_send(connection, "ws_window", scope, LIMIT, at)
        for _ in range(count)
    ]


async def test_a_burst_across_the_hour_boundary_cannot_pass_the_limit_twice(
    connection: asyncpg.Connection,
) -> None:
    before = await _burst(connection, "contact:ct_b", BOUNDARY - timedelta(seconds=30), LIMIT)
    assert before == [True] * LIMIT
    # A new clock hour begins 30 s later; the last hour still holds the burst.
    after = await _burst(connection, "contact:ct_b", BOUNDARY + timedelta(seconds=30), LIMIT)
    assert after == [False] * LIMIT
    assert not await message_store.count_send(
        connection, "ws_window", "contact:ct_b", LIMIT, BOUNDARY + timedelta(minutes=59)
    )
    # An hour after the burst (and its minute) the window takes sends again.
    later = await _burst(
        connection, "contact:ct_b", BOUNDARY + timedelta(minutes=60, seconds=30), 1
    )
    assert later == [True]


async def test_sends_leave_the_window_one_minute_at_a_time(
    connection: asyncpg.Connection,
) -> None:
    start = BOUNDARY - timedelta(minutes=30)
    for minute in range(LIMIT):
        assert await _burst(connection, "", start + timedelta(minutes=minute), 1) == [True]
    full_at = start + timedelta(minutes=40)
    assert await _burst(connection, "", full_at, 1) == [False]
    # The oldest send (start) leaves the window at start + 61 min: 21 minutes from full_at.
    reopens_in = await message_store.send_window_reopens_in(
        connection, "ws_window", "", LIMIT, full_at
    )
    assert reopens_in == pytest.approx(21 * 60)
    assert await _burst(connection, "", start + timedelta(minutes=61), 2) == [True, False]
    assert await message_store.send_window_reopens_in(
        connection, "ws_window", "", LIMIT, start + timedelta(minutes=61)
    ) == pytest.approx(60)


async def test_a_refusal_says_when_the_window_reopens(notifier: Notifier) -> None:
    await notifier.stub.UpdateWorkspaceSettings(
        pb.UpdateWorkspaceSettingsRequest(
            settings=pb.WorkspaceSettings(workspace_id=WORKSPACE, contact_hourly_limit=2),
            idempotency_key="window-limits",
        ),
        metadata=testing.admin_metadata(),
    )
    for index in range(2):
        await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE, dedup_key=f"w{index}")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE, dedup_key="w-over")
    code, reason, _ = testing.error_details(caught.value)
    metadata = testing.error_metadata(caught.value)
    assert (code, reason, metadata["scope"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        "contact",
    )
    # The two sends of this minute leave the window in 60 to 61 minutes.
    assert 3540 <= int(metadata["retry_after_seconds"]) <= 3660
