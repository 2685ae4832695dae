"""Storage of connected Stripe accounts and their webhook signing secrets (sealed); the
only module that runs their SQL (account_queries.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from runtime.database import Connection, Queries

queries = Queries("billing_gateway", "account_queries.sql")


@dataclass(frozen=True)
class AccountRecord:
    """A connected Stripe account (the key still sealed)."""

    workspace_id: str
    secret_key_ciphertext: bytes
    connected_account_id: str
    livemode: bool
    webhook_endpoint_id: str
    webhook_url: str
    enabled_events: list[str]


def _account(row: asyncpg.Record) -> AccountRecord:
    return AccountRecord(
        workspace_id=row["workspace_id"],
        secret_key_ciphertext=bytes(row["secret_key_ciphertext"]),
        connected_account_id=row["connected_account_id"],
        livemode=row["livemode"],
        webhook_endpoint_id=row["webhook_endpoint_id"],
        webhook_url=row["webhook_url"],
        enabled_events=list(row["enabled_events"]),
    )


async def save_account(
    connection: Connection,
    workspace_id: str,
    secret_key_ciphertext: bytes,
    connected_account_id: str,
    livemode: bool,
    webhook_endpoint_id: str,
    webhook_url: str,
    enabled_events: Sequence[str],
) -> AccountRecord:
    """Creates or replaces the workspace's account."""
    row = await connection.fetchrow(
        queries.upsert_account,
        workspace_id,
        secret_key_ciphertext,
        connected_account_id,
        livemode,
        webhook_endpoint_id,
        webhook_url,
        list(enabled_events),
    )
    assert row is not None
    return _account(row)


async def get_account(connection: Connection, workspace_id: str) -> AccountRecord | None:
    """The workspace's account, or None."""
    row = await connection.fetchrow(queries.get_account, workspace_id)
    return _account(row) if row else None


async def add_webhook_secret(
    connection: Connection, workspace_id: str, secret_id: str, ciphertext: bytes
) -> None:
    """Adds a signing secret; the older ones stay active for rotation."""
    await connection.execute(queries.insert_webhook_secret, workspace_id, secret_id, ciphertext)


@dataclass(frozen=True)
class SealedWebhookSecret:
    """A signing secret as stored: sealed, with its retirement time if one is set."""

    secret_id: str
    ciphertext: bytes
    retired_at: datetime | None


@dataclass(frozen=True)
class WebhookSecretMetadata:
    """What may be shown of a signing secret: never the secret."""

    secret_id: str
    created_at: datetime
    retired_at: datetime | None


async def unretired_webhook_secrets(
    connection: Connection, workspace_id: str, now: datetime
) -> list[SealedWebhookSecret]:
    """The signing secrets not retired at ``now``, newest first."""
    rows = await connection.fetch(queries.unretired_webhook_secrets, workspace_id, now)
    return [
        SealedWebhookSecret(row["secret_id"], bytes(row["ciphertext"]), row["retired_at"])
        for row in rows
    ]


async def webhook_secret_metadata(
    connection: Connection, workspace_id: str
) -> list[WebhookSecretMetadata]:
    """Every signing secret of the workspace (retired ones too), newest first."""
    rows = await connection.fetch(queries.webhook_secret_metadata, workspace_id)
    return [WebhookSecretMetadata(r["secret_id"], r["created_at"], r["retired_at"]) for r in rows]


async def retire_webhook_secret(
    connection: Connection, workspace_id: str, secret_id: str, retire_at: datetime
) -> WebhookSecretMetadata | None:
    """Retires the secret at ``retire_at`` (or keeps an earlier retirement); None when the
    workspace has no such secret."""
    row = await connection.fetchrow(
        queries.retire_webhook_secret, workspace_id, secret_id, retire_at
    )
    if row is None:
        return None
    return WebhookSecretMetadata(row["secret_id"], row["created_at"], row["retired_at"])
