"""Storage of the audit log: the only module that runs the audit SQL (audit_queries.sql).

Entries are recorded unchained (``record``, ``record_and_save``) in the transaction of what
they describe, without touching the workspace's chain head; the chainer (chaining.py) reads
them back (``pending_page``), links them (``append_chained``) and removes them from the
queue (``remove_pending``), holding the head row (``claim_head``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message

from policy.domain import audit, pending
from runtime import ids
from runtime.database import Connection, Queries

queries = Queries("policy", "audit_queries.sql")


def _entry(row: asyncpg.Record) -> audit.Entry:
    return audit.Entry(
        occurred_at=row["occurred_at"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        kind=row["kind"],
        contact_id=row["contact_id"],
        stripe_customer_id=row["stripe_customer_id"],
        action=row["action"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        outcome=row["outcome"],
        subject_id=row["subject_id"],
        confirmation=(
            audit.confirmation_from_document(json.loads(row["confirmation"]))
            if row["confirmation"] is not None
            else None
        ),
    )


def _chained(row: asyncpg.Record) -> audit.ChainedEntry:
    return audit.ChainedEntry(
        workspace_id=row["workspace_id"],
        sequence=row["sequence"],
        entry=_entry(row),
        previous_hash=row["previous_hash"],
        hash=row["hash"],
        key_id=row["key_id"],
    )


def _confirmation(entry: audit.Entry) -> str | None:
    if entry.confirmation is None:
        return None
    return json.dumps(audit.confirmation_document(entry.confirmation))


def _record_columns(
    keys: audit.MacKeys, workspace_id: str, entries: Sequence[audit.Entry]
) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(15)]
    for entry in entries:
        entry_id = ids.new_id("ae")
        values = (
            entry_id,
            entry.occurred_at,
            entry.actor_kind,
            entry.actor_id,
            entry.kind,
            entry.contact_id,
            entry.stripe_customer_id,
            entry.action,
            entry.amount_minor,
            entry.currency,
            entry.outcome,
            entry.subject_id,
            _confirmation(entry),
            keys.signing_key_id,
            pending.seal(keys, workspace_id, entry_id, entry),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


async def record(
    connection: Connection,
    keys: audit.MacKeys,
    workspace_id: str,
    entries: Sequence[audit.Entry],
) -> None:
    """Records entries, sealed, in the caller's transaction; the chainer links them once it
    commits. Takes no lock that another decision of the workspace would wait on."""
    if entries:
        await connection.execute(
            queries.record, workspace_id, *_record_columns(keys, workspace_id, entries)
        )


@dataclass(frozen=True)
class GrantCommit:
    """A grant to mark COMMITTED in the same statement (its row locked by the caller)."""

    grant_id: str
    stripe_object_id: str
    resolved_at: datetime


async def record_and_save(
    connection: Connection,
    keys: audit.MacKeys,
    workspace_id: str,
    entries: Sequence[audit.Entry],
    idempotency_key: str,
    response: Message,
    committing: GrantCommit | None = None,
) -> None:
    """``record`` and ``runtime.idempotency.save`` in one statement (the key must have been
    claimed in this transaction), with a grant's commit when ``committing`` says so."""
    values = (
        workspace_id,
        *_record_columns(keys, workspace_id, entries),
        idempotency_key,
        response.SerializeToString(deterministic=True),
    )
    if committing is None:
        await connection.execute(queries.record_and_save, *values)
        return
    await connection.execute(
        queries.commit_grant_record_and_save,
        *values,
        committing.grant_id,
        committing.stripe_object_id,
        committing.resolved_at,
    )


# -- chaining ------------------------------------------------------------------------------


async def pending_workspaces(connection: Connection, limit: int) -> list[str]:
    """Workspaces that have recorded entries not yet removed from the queue."""
    rows = await connection.fetch(queries.pending_workspaces, limit)
    return [row["workspace_id"] for row in rows]


async def claim_head(
    connection: Connection, workspace_id: str, *, wait: bool
) -> tuple[int, str] | None:
    """Locks the workspace's chain head until the transaction ends (creating it when
    absent): (last sequence, last hash), or None when another chainer holds it and ``wait``
    is False."""
    await connection.execute(queries.ensure_audit_head, workspace_id)
    query = queries.lock_audit_head if wait else queries.claim_audit_head
    row = await connection.fetchrow(query, workspace_id)
    return (row["last_sequence"], row["last_hash"]) if row else None


@dataclass(frozen=True)
class Pending:
    """A recorded entry read back, and whether an entry with its id is already chained."""

    entry: pending.PendingEntry
    chained: bool


async def pending_page(
    connection: Connection, workspace_id: str, after_pending_id: int, limit: int
) -> list[Pending]:
    """Recorded entries after one, in recording order."""
    rows = await connection.fetch(queries.pending_page, workspace_id, after_pending_id, limit)
    return [
        Pending(
            pending.PendingEntry(
                workspace_id=row["workspace_id"],
                pending_id=row["pending_id"],
                entry_id=row["entry_id"],
                entry=_entry(row),
                key_id=row["key_id"],
                seal=row["seal"],
            ),
            row["chained"],
        )
        for row in rows
    ]


async def append_chained(
    connection: Connection,
    workspace_id: str,
    chained: Sequence[audit.ChainedEntry],
    entry_ids: Sequence[str],
) -> None:
    """Adds linked entries to the chain and moves its head past them (the caller holds the
    head, see ``claim_head``)."""
    if not chained:
        return
    columns: list[list[Any]] = [[] for _ in range(17)]
    for item, entry_id in zip(chained, entry_ids, strict=True):
        entry = item.entry
        values = (
            item.sequence,
            entry.occurred_at,
            entry.actor_kind,
            entry.actor_id,
            entry.kind,
            entry.contact_id,
            entry.stripe_customer_id,
            entry.action,
            entry.amount_minor,
            entry.currency,
            entry.outcome,
            entry.subject_id,
            item.previous_hash,
            item.hash,
            _confirmation(entry),
            item.key_id,
            entry_id,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    await connection.execute(
        queries.append_audit, workspace_id, *columns, chained[-1].sequence, chained[-1].hash
    )


async def remove_pending(
    connection: Connection, workspace_id: str, pending_ids: Sequence[int]
) -> None:
    """Removes chained entries from the queue (the database refuses any other)."""
    if pending_ids:
        await connection.execute(queries.remove_pending, workspace_id, list(pending_ids))


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Filters of ListAuditEvents ("" / None means any)."""

    contact_id: str = ""
    action: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    stripe_customer_id: str = ""
    actor_id: str = ""


async def list_audit_events(
    connection: Connection, workspace_id: str, where: AuditFilter, after_sequence: int, limit: int
) -> list[audit.ChainedEntry]:
    """A page of audit events in chain order after a sequence."""
    rows = await connection.fetch(
        queries.list_audit_events,
        workspace_id,
        where.contact_id,
        where.action,
        where.start_time,
        where.end_time,
        after_sequence,
        limit,
        where.stripe_customer_id,
        where.actor_id,
    )
    return [_chained(row) for row in rows]


async def audit_chain_page(
    connection: Connection, workspace_id: str, after_sequence: int, limit: int
) -> list[audit.ChainedEntry]:
    """Every entry after a sequence, in order, for verification."""
    rows = await connection.fetch(queries.audit_chain_page, workspace_id, after_sequence, limit)
    return [_chained(row) for row in rows]


async def audit_head(connection: Connection, workspace_id: str) -> tuple[int, str]:
    """(last sequence, last hash) the chain head records; (0, "") for an empty chain."""
    row = await connection.fetchrow(queries.get_audit_head, workspace_id)
    return (row["last_sequence"], row["last_hash"]) if row else (0, "")


@dataclass(frozen=True)
class AuditHead:
    """Where a workspace's chain ends, as its head row records it."""

    workspace_id: str
    sequence: int
    hash: str


async def audit_heads_page(
    connection: Connection, after_workspace_id: str, limit: int
) -> list[AuditHead]:
    """The chain heads of the workspaces after one, in workspace order (for checkpoints)."""
    rows = await connection.fetch(queries.audit_heads_page, after_workspace_id, limit)
    return [AuditHead(r["workspace_id"], r["last_sequence"], r["last_hash"]) for r in rows]
