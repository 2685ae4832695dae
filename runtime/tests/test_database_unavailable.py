"""What the runtime counts as "the database cannot answer now" (a 503 / UNAVAILABLE the
client retries) rather than a bug (500 / INTERNAL): errors a real server gives."""

from __future__ import annotations

import os

import asyncpg
import pytest

from runtime import database


async def test_a_server_refusing_more_connections_is_unavailable(database_url: str) -> None:
    role = f"askvault_full_{os.getpid()}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg.connect(database.with_credentials(database_url, role, ""))
        assert isinstance(refused.value, database.UNAVAILABLE_ERRORS), type(refused.value)
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
