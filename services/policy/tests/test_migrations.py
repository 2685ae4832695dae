"""Migration 0002 on a database that already holds grants: what they reserved or spent
counts for their customers too, so releasing an old grant frees exactly what it holds."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from policy import audit_log, chaining
from policy.domain import audit
from runtime import database

from .conftest import AUDIT_MAC_KEYS

PERIOD_START = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 4, 1, tzinfo=UTC)


async def test_existing_grants_are_counted_for_their_customers(empty_database_url: str) -> None:
    first, *later = database.load_migrations("policy.migrations")
    connection = await asyncpg.connect(empty_database_url)
    try:
        await connection.execute("CREATE SCHEMA policy")
        await connection.execute(
            "CREATE TABLE policy.schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        async with connection.transaction():
            await connection.execute("SET LOCAL search_path TO policy, public")
            await connection.execute(first.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (1, $1)", first.name
            )
        grants = [
            # (grant, contact, customer, state, quantity)
            ("gr_1", "ct_a", "cus_1", "committed", 20000),
            ("gr_2", "ct_b", "cus_1", "reserved", 15000),
            ("gr_3", "ct_b", "cus_1", "released", 9000),
            ("gr_4", "ct_c", "cus_2", "redeemed", 1000),
        ]
        for grant_id, contact, customer, state, quantity in grants:
            await connection.execute(
                "INSERT INTO policy.grants (workspace_id, grant_id, contact_id, action,"
                " stripe_customer_id, state, expires_at, created_at, counter,"
                " counter_currency, counter_period_start, quantity)"
                " VALUES ('ws', $1, $2, 'refund', $3, $4, $5, $5, 'refund_amount', 'usd', $5,"
                " $6)",
                grant_id,
                contact,
                customer,
                state,
                PERIOD_START,
                quantity,
            )
        for contact, used in (("ct_a", 20000), ("ct_b", 15000), ("ct_c", 1000)):
            await connection.execute(
                "INSERT INTO policy.counters VALUES ('ws', $1, 'refund_amount', 'usd', $2, $3, $4)",
                contact,
                PERIOD_START,
                PERIOD_END,
                used,
            )

        applied = await database.migrate(connection, "policy", "policy.migrations")

        assert applied == [m.version for m in later]
        rows = await connection.fetch(
            "SELECT stripe_customer_id, counter, currency, period_start, period_end, used"
            " FROM policy.customer_counters ORDER BY stripe_customer_id"
        )
        assert [tuple(row) for row in rows] == [
            ("cus_1", "refund_amount", "usd", PERIOD_START, PERIOD_END, 35000),
            ("cus_2", "refund_amount", "usd", PERIOD_START, PERIOD_END, 1000),
        ]
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM policy.audit_events WHERE confirmation IS NOT NULL"
            )
            == 0
        )
    finally:
        await connection.close()


async def test_a_chain_written_before_0006_still_verifies_and_grows_through_the_chainer(
    empty_database_url: str,
) -> None:
    """0006 on a database with a keyed chain: the old entries stay as they are (no entry id)
    and verify; entries recorded afterwards are linked after them."""
    keys = audit.MacKeys.parse(AUDIT_MAC_KEYS)
    migrations = database.load_migrations("policy.migrations")
    before_0006 = [m for m in migrations if m.version < 6]
    connection = await asyncpg.connect(
        empty_database_url, server_settings={"search_path": "policy,public"}
    )
    try:
        await connection.execute("CREATE SCHEMA policy")
        await connection.execute(
            "CREATE TABLE policy.schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in before_0006:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        old = [
            audit.Entry(occurred_at=PERIOD_START, actor_kind="admin", actor_id="a", kind="k")
            for _ in range(3)
        ]
        # As policy appended before 0006: chained under the head row's lock.
        for item in audit.chain(keys, "ws", 0, "", old):
            await connection.execute(
                "INSERT INTO audit_events (workspace_id, sequence, occurred_at, actor_kind,"
                " actor_id, kind, contact_id, stripe_customer_id, action, amount_minor, currency,"
                " outcome, subject_id, previous_hash, hash, key_id)"
                " VALUES ('ws', $1, $2, 'admin', 'a', 'k', '', '', '', 0, '', '', '', $3, $4, $5)",
                item.sequence,
                item.entry.occurred_at,
                item.previous_hash,
                item.hash,
                item.key_id,
            )
            await connection.execute(
                "INSERT INTO audit_heads VALUES ('ws', $1, $2) ON CONFLICT (workspace_id)"
                " DO UPDATE SET last_sequence = $1, last_hash = $2",
                item.sequence,
                item.hash,
            )

        assert await database.migrate(connection, "policy", "policy.migrations") == [6, 7, 8]
        async with connection.transaction():
            await audit_log.record(connection, keys, "ws", old[:2])
        assert await chaining.chain_workspace(connection, keys, "ws", 10, wait=True) == 2

        verifier = audit.Verifier(keys, "ws")
        for stored in await audit_log.audit_chain_page(connection, "ws", 0, 100):
            assert verifier.feed(stored)
        head = await audit_log.audit_head(connection, "ws")
        assert verifier.finish(*head) == audit.Verification(True, 5, 0, "", 0)
        entry_ids = await connection.fetch("SELECT entry_id FROM audit_events ORDER BY sequence")
        assert [row["entry_id"] is None for row in entry_ids] == [True] * 3 + [False] * 2
    finally:
        await connection.close()
