"""A pooled connection comes back clean without asyncpg's reset query: what a holder left
open (a transaction, its writes and its transaction-scoped locks) is gone."""

from __future__ import annotations

from runtime import database


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await database.create_pool(database_url, "public", min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            await connection.execute("CREATE TABLE pool_release_probe (id int)")
        connection = await pool.acquire()
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("INSERT INTO pool_release_probe VALUES (1)")
        await connection.execute("SELECT pg_advisory_xact_lock(4242)")
        await pool.release(connection)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM pool_release_probe") == 0
            held = await again.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
            )
            assert held == 0
    finally:
        await pool.close()
