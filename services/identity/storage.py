"""Identity's storage: the only module that runs identity's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from identity.domain.contacts import Tags
from runtime.database import Connection, Queries

queries = Queries("identity")


@dataclass(frozen=True)
class SecretRecord:
    """A secret's metadata."""

    key_id: str
    created_at: datetime
    retired_at: datetime | None
    purpose: str


@dataclass(frozen=True)
class SealedSecret:
    """An active secret's ciphertext and which sealing context it was sealed under."""

    ciphertext: bytes
    # True: sealed under the purpose's own context; False: under the one from before
    # purposes existed (migration 0002).
    purpose_sealed: bool


@dataclass(frozen=True)
class ActiveSecrets:
    """A workspace's active secrets of one purpose, with its settings."""

    sealed: dict[str, SealedSecret]
    customer_metadata_key: str


@dataclass(frozen=True)
class ContactRecord:
    """A stored contact."""

    workspace_id: str
    contact_id: str
    user_id: str
    email: str
    stripe_customer_id: str
    tags: Tags
    created_at: datetime
    claimed_email: str
    binding_source: str


def _contact(row: asyncpg.Record) -> ContactRecord:
    return ContactRecord(
        workspace_id=row["workspace_id"],
        contact_id=row["contact_id"],
        user_id=row["user_id"],
        email=row["email"],
        stripe_customer_id=row["stripe_customer_id"],
        tags=Tags(
            customer_status=row["customer_status"],
            customer_status_at=row["customer_status_at"],
            plan_tier=row["plan_tier"],
            plan_tier_at=row["plan_tier_at"],
            trial_ends=row["trial_ends"],
            trial_ends_at=row["trial_ends_at"],
        ),
        created_at=row["created_at"],
        claimed_email=row["claimed_email"],
        binding_source=row["binding_source"],
    )


def _secret(row: asyncpg.Record) -> SecretRecord:
    return SecretRecord(row["key_id"], row["created_at"], row["retired_at"], row["purpose"])


async def insert_secret(
    connection: Connection, workspace_id: str, key_id: str, ciphertext: bytes, purpose: str
) -> SecretRecord | None:
    """Adds a secret of a purpose (and the workspace); None when the key id is taken."""
    await connection.execute(queries.ensure_workspace, workspace_id)
    row = await connection.fetchrow(
        queries.insert_secret, workspace_id, key_id, ciphertext, purpose
    )
    return _secret(row) if row else None


async def retire_secret(
    connection: Connection, workspace_id: str, key_id: str
) -> SecretRecord | None:
    """Retires a secret (keeping the first retirement time); None when unknown."""
    row = await connection.fetchrow(queries.retire_secret, workspace_id, key_id)
    return _secret(row) if row else None


async def list_secrets(connection: Connection, workspace_id: str) -> list[SecretRecord]:
    """Every secret's metadata, oldest first."""
    return [_secret(row) for row in await connection.fetch(queries.list_secrets, workspace_id)]


async def active_secrets(
    connection: Connection, workspace_id: str, purpose: str
) -> ActiveSecrets | None:
    """The active secrets of one purpose and the workspace's settings; None for an unknown
    workspace."""
    rows = await connection.fetch(queries.workspace_active_secrets, workspace_id, purpose)
    if not rows:
        return None
    return ActiveSecrets(
        sealed={
            row["key_id"]: SealedSecret(bytes(row["ciphertext"]), row["purpose_sealed"])
            for row in rows
            if row["key_id"] is not None
        },
        customer_metadata_key=rows[0]["customer_metadata_key"],
    )


@dataclass(frozen=True)
class WorkspaceSettings:
    """What an admin sets for a workspace."""

    # The Stripe customer metadata key naming the workspace's user id ("" for none).
    customer_metadata_key: str


def _settings(row: asyncpg.Record) -> WorkspaceSettings:
    return WorkspaceSettings(str(row["customer_metadata_key"]))


async def get_customer_metadata_key(connection: Connection, workspace_id: str) -> str | None:
    """The workspace's customer metadata key ("" for none); None for an unknown workspace."""
    found = await get_workspace_settings(connection, workspace_id)
    return None if found is None else found.customer_metadata_key


async def get_workspace_settings(
    connection: Connection, workspace_id: str
) -> WorkspaceSettings | None:
    """The workspace's settings; None for an unknown workspace."""
    row = await connection.fetchrow(queries.get_workspace_settings, workspace_id)
    return None if row is None else _settings(row)


async def set_workspace_settings(
    connection: Connection, workspace_id: str, settings: WorkspaceSettings
) -> WorkspaceSettings | None:
    """Replaces the workspace's settings; None for an unknown workspace."""
    row = await connection.fetchrow(
        queries.update_workspace_settings,
        workspace_id,
        settings.customer_metadata_key,
    )
    return None if row is None else _settings(row)


async def find_visitor_contact(
    connection: Connection, workspace_id: str, user_id: str, email_normalized: str
) -> ContactRecord | None:
    """The contact for this user id (or email, without one), or None: one read."""
    if user_id:
        row = await connection.fetchrow(queries.find_contact_by_user_id, workspace_id, user_id)
    else:
        row = await connection.fetchrow(
            queries.find_contact_by_email_only, workspace_id, email_normalized
        )
    return _contact(row) if row else None


async def upsert_contact(
    connection: Connection,
    workspace_id: str,
    new_contact_id: str,
    user_id: str,
    email: str,
    email_normalized: str,
    claimed_email: str = "",
) -> ContactRecord:
    """The contact for this user id (or email, without one), created on first sight.
    ``email`` is the signed email (empty when none was signed) and replaces the stored one
    only when set; ``claimed_email`` is unsigned display text (kept when empty)."""
    if user_id:
        row = await connection.fetchrow(
            queries.upsert_contact_by_user_id,
            workspace_id,
            new_contact_id,
            user_id,
            email,
            email_normalized,
            claimed_email,
        )
    else:
        row = await connection.fetchrow(
            queries.upsert_contact_by_email, workspace_id, new_contact_id, email, email_normalized
        )
    assert row is not None
    return _contact(row)


async def get_contact(
    connection: Connection, workspace_id: str, contact_id: str, *, for_update: bool = False
) -> ContactRecord | None:
    """One contact of the workspace, or None."""
    query = queries.get_contact_for_update if for_update else queries.get_contact
    row = await connection.fetchrow(query, workspace_id, contact_id)
    return _contact(row) if row else None


async def contacts_by_customer(
    connection: Connection,
    workspace_id: str,
    stripe_customer_id: str,
    *,
    for_update: bool = False,
) -> list[ContactRecord]:
    """The contacts linked to a Stripe customer."""
    query = queries.contacts_by_customer_for_update if for_update else queries.contacts_by_customer
    return [
        _contact(row) for row in await connection.fetch(query, workspace_id, stripe_customer_id)
    ]


async def link_customer(
    connection: Connection,
    workspace_id: str,
    contact_id: str,
    stripe_customer_id: str,
    binding_source: str,
) -> ContactRecord:
    """Sets the contact's Stripe customer and the signed fact it came from."""
    row = await connection.fetchrow(
        queries.link_customer, workspace_id, contact_id, stripe_customer_id, binding_source
    )
    assert row is not None
    return _contact(row)


async def legacy_bindings(
    connection: Connection,
    workspace_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ContactRecord]:
    """Contacts bound by an unsigned email (before migration 0002), oldest first, after the
    cursor."""
    after_time, after_id = after if after is not None else (None, "")
    rows = await connection.fetch(
        queries.legacy_bindings, workspace_id, after_time, after_id, limit
    )
    return [_contact(row) for row in rows]


async def save_tags(
    connection: Connection, workspace_id: str, contact_id: str, tags: Tags
) -> ContactRecord:
    """Stores the contact's tags with their source times."""
    row = await connection.fetchrow(
        queries.save_tags,
        workspace_id,
        contact_id,
        tags.customer_status,
        tags.customer_status_at,
        tags.plan_tier,
        tags.plan_tier_at,
        tags.trial_ends,
        tags.trial_ends_at,
    )
    assert row is not None
    return _contact(row)
