"""The visitor's line and the conversation's claim in one statement: stored for the owner (or
an unowned conversation), and nothing changed for anyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from edge import storage
from runtime import database
from runtime.database import Connection


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await database.create_pool(database_url, "edge")
    yield created
    await created.close()


async def _state(connection: Connection) -> tuple[object, ...]:
    row = await connection.fetchrow(
        "SELECT contact_id, updated_at, (SELECT count(*) FROM edge.messages) AS lines"
        " FROM edge.conversations WHERE conversation_id = 'c1'"
    )
    assert row is not None
    return tuple(row)


async def test_the_first_verified_contact_owns_and_others_change_nothing(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection:
        claim = storage.claim_with_visitor_line
        assert await claim(connection, "ws", "c1", "chat", "", "hi", "greeting", verified=False)
        assert await claim(connection, "ws", "c1", "chat", "ct_1", "x", "status", verified=True)
        assert await claim(connection, "ws", "c1", "chat", "ct_1", "y", "status", verified=True)
        owned = await _state(connection)
        assert owned[0] == "ct_1" and owned[2] == 3
        assert not await claim(connection, "ws", "c1", "chat", "ct_2", "z", "status", verified=True)
        assert not await claim(connection, "ws", "c1", "chat", "", "z", "status", verified=False)
        assert await _state(connection) == owned
        lines = await storage.recent_messages(connection, "ws", "c1")
        assert [(line.text, line.verified) for line in lines] == [
            ("hi", False),
            ("x", True),
            ("y", True),
        ]
