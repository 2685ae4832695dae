"""Storage of each workspace's notifier settings (sender, reply-to, WhatsApp number, send
limits, the helpdesk webhook's sealed secret); the only module that runs their SQL
(settings_queries.sql)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from runtime.database import Connection, Queries

queries = Queries("notifier", "settings_queries.sql")


@dataclass(frozen=True)
class WorkspaceSettingsRecord:
    """A workspace's stored settings ('' and 0 mean "the service default")."""

    workspace_id: str
    sender_name: str = ""
    from_address: str = ""
    reply_to: str = ""
    agent_inbox: str = ""
    helpdesk_webhook_url: str = ""
    contact_hourly_limit: int = 0
    workspace_hourly_limit: int = 0
    whatsapp_phone_number_id: str = ""
    # Sealed with SECRETS_ENCRYPTION_KEYS (helpdesk_secrets.py); None: none set.
    helpdesk_webhook_secret_sealed: bytes | None = field(default=None, repr=False)


def _settings(row: asyncpg.Record) -> WorkspaceSettingsRecord:
    return WorkspaceSettingsRecord(
        workspace_id=row["workspace_id"],
        sender_name=row["sender_name"],
        from_address=row["from_address"],
        reply_to=row["reply_to"],
        agent_inbox=row["agent_inbox"],
        helpdesk_webhook_url=row["helpdesk_webhook_url"],
        contact_hourly_limit=row["contact_hourly_limit"],
        workspace_hourly_limit=row["workspace_hourly_limit"],
        whatsapp_phone_number_id=row["whatsapp_phone_number_id"],
        helpdesk_webhook_secret_sealed=sealed_or_none(row["helpdesk_webhook_secret"]),
    )


def sealed_or_none(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


async def get_workspace_settings(
    connection: Connection, workspace_id: str
) -> WorkspaceSettingsRecord:
    """The workspace's stored settings (all defaults when it stored none)."""
    row = await connection.fetchrow(queries.get_workspace_settings, workspace_id)
    return _settings(row) if row else WorkspaceSettingsRecord(workspace_id)


async def save_workspace_settings(
    connection: Connection, record: WorkspaceSettingsRecord
) -> WorkspaceSettingsRecord:
    """Replaces the workspace's settings."""
    row = await connection.fetchrow(
        queries.upsert_workspace_settings,
        record.workspace_id,
        record.sender_name,
        record.from_address,
        record.reply_to,
        record.agent_inbox,
        record.helpdesk_webhook_url,
        record.contact_hourly_limit,
        record.workspace_hourly_limit,
        record.whatsapp_phone_number_id,
    )
    assert row is not None
    return _settings(row)


async def set_helpdesk_webhook_secret(
    connection: Connection, workspace_id: str, sealed: bytes | None
) -> WorkspaceSettingsRecord:
    """Stores the workspace's sealed helpdesk signing secret (None removes it)."""
    row = await connection.fetchrow(queries.set_helpdesk_webhook_secret, workspace_id, sealed)
    assert row is not None
    return _settings(row)
