"""Notifier migrations applied to data as it was before them."""

from __future__ import annotations

import asyncpg

from runtime import database


async def test_unproven_whatsapp_opt_ins_are_withdrawn(empty_database_url: str) -> None:
    # Before 0002 the chat recorded a WhatsApp opt-in for any number a visitor typed.
    migrations = database.load_migrations("notifier.migrations")
    connection = await asyncpg.connect(empty_database_url)
    try:
        await connection.execute(
            "CREATE SCHEMA notifier; CREATE TABLE notifier.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute(f"SET search_path TO notifier; {migrations[0].sql}")
        await connection.execute("INSERT INTO schema_migrations VALUES (1, 'initial')")
        await connection.execute(
            "INSERT INTO channel_consents (workspace_id, contact_id, channel, opted_in, source,"
            " occurred_at, whatsapp_number) VALUES"
            " ('ws', 'ct_typed', 'whatsapp', true, 'chat_opt_in', now(), '+14155550123'),"
            " ('ws', 'ct_proven', 'whatsapp', true, 'whatsapp_link_proof', now(), '+1415555099'),"
            " ('ws', 'ct_mail', 'email', true, 'chat_opt_in', now(), '')"
        )
        await connection.execute("RESET search_path")
        applied = await database.migrate(connection, "notifier", "notifier.migrations")
        later = [m.version for m in database.load_migrations("notifier.migrations")][1:]
        assert applied == later, applied
        rows = await connection.fetch(
            "SELECT contact_id, opted_in, source FROM notifier.channel_consents ORDER BY contact_id"
        )
        history = await connection.fetch(
            "SELECT contact_id, opted_in FROM notifier.channel_consent_history"
        )
    finally:
        await connection.close()
    assert [tuple(r) for r in rows] == [
        ("ct_mail", True, "chat_opt_in"),
        ("ct_proven", True, "whatsapp_link_proof"),
        ("ct_typed", False, "unproven_number_withdrawn"),
    ]
    assert [tuple(r) for r in history] == [("ct_typed", False)]
