"""Storage of each contact's consent per channel (with its history), inbound WhatsApp
messages and the 24-hour windows they open; the only module that runs their SQL
(consent_queries.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from notifier.domain import outbox
from runtime.database import Connection, Queries

queries = Queries("notifier", "consent_queries.sql")


@dataclass(frozen=True)
class ConsentRecord:
    """The consent in force for a contact and channel."""

    channel: str
    opted_in: bool
    source: str
    occurred_at: datetime
    whatsapp_number: str


def _consent(row: asyncpg.Record) -> ConsentRecord:
    return ConsentRecord(
        channel=row["channel"],
        opted_in=row["opted_in"],
        source=row["source"],
        occurred_at=row["occurred_at"],
        whatsapp_number=row["whatsapp_number"],
    )


async def get_consents(
    connection: Connection, workspace_id: str, contact_id: str
) -> list[ConsentRecord]:
    """The contact's consents in force, one per channel."""
    rows = await connection.fetch(queries.get_consents, workspace_id, contact_id)
    return [_consent(row) for row in rows]


async def whatsapp_consent(
    connection: Connection, workspace_id: str, contact_id: str
) -> outbox.Consent | None:
    """The contact's WhatsApp consent in force now; None when none was ever recorded (or
    the message has no contact)."""
    if not contact_id:
        return None
    row = await connection.fetchrow(queries.get_consent, workspace_id, contact_id, outbox.WHATSAPP)
    return outbox.Consent(row["opted_in"], row["whatsapp_number"]) if row else None


async def record_consent(
    connection: Connection,
    workspace_id: str,
    contact_id: str,
    channel: str,
    opted_in: bool,
    source: str,
    occurred_at: datetime,
    whatsapp_number: str,
) -> ConsentRecord:
    """Records a consent in the history and returns the one in force (the newest)."""
    values = (workspace_id, contact_id, channel, opted_in, source, occurred_at, whatsapp_number)
    await connection.execute(queries.insert_consent_history, *values)
    row = await connection.fetchrow(queries.upsert_consent, *values)
    if row is None:
        row = await connection.fetchrow(queries.get_consent, workspace_id, contact_id, channel)
    assert row is not None
    return _consent(row)


async def record_inbound(
    connection: Connection,
    workspace_id: str,
    contact_id: str,
    provider_message_id: str,
    whatsapp_number: str,
    received_at: datetime,
) -> datetime:
    """Records an inbound message once; returns the contact's latest inbound time."""
    new = await connection.fetchval(
        queries.insert_inbound,
        workspace_id,
        provider_message_id,
        contact_id,
        whatsapp_number,
        received_at,
    )
    if new:
        latest: datetime = await connection.fetchval(
            queries.open_window, workspace_id, contact_id, received_at
        )
        return latest
    stored: datetime | None = await connection.fetchval(
        queries.get_window, workspace_id, contact_id
    )
    return stored if stored is not None else received_at
