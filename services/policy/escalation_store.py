"""Storage of escalations: opened, decided by an admin, finished as the billing gateway
reports; the only module that runs their SQL (escalation_queries.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runtime.database import Connection, Queries

queries = Queries("policy", "escalation_queries.sql")


@dataclass(frozen=True)
class EscalationRecord:
    """A stored escalation; details and context in their proto JSON form."""

    workspace_id: str
    escalation_id: str
    contact_id: str
    stripe_customer_id: str
    action: str
    details: dict[str, Any]
    context: dict[str, Any]
    reason: str
    state: str  # open, approved, rejected, executed, failed
    created_at: datetime
    decided_at: datetime | None
    decided_by: str
    grant_id: str
    decision_note: str = ""
    failure_reason: str = ""
    stripe_object_id: str = ""
    finished_at: datetime | None = None


def _escalation(row: asyncpg.Record) -> EscalationRecord:
    return EscalationRecord(
        workspace_id=row["workspace_id"],
        escalation_id=row["escalation_id"],
        contact_id=row["contact_id"],
        stripe_customer_id=row["stripe_customer_id"],
        action=row["action"],
        details=json.loads(row["details"]),
        context=json.loads(row["context"]),
        reason=row["reason"],
        state=row["state"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        grant_id=row["grant_id"],
        decision_note=row["decision_note"],
        failure_reason=row["failure_reason"],
        stripe_object_id=row["stripe_object_id"],
        finished_at=row["finished_at"],
    )


async def insert_escalation(
    connection: Connection,
    workspace_id: str,
    escalation_id: str,
    *,
    contact_id: str,
    stripe_customer_id: str,
    action: str,
    details: dict[str, Any],
    context: dict[str, Any],
    reason: str,
    now: datetime,
) -> EscalationRecord:
    """Opens an escalation."""
    row = await connection.fetchrow(
        queries.insert_escalation,
        workspace_id,
        escalation_id,
        contact_id,
        stripe_customer_id,
        action,
        json.dumps(details),
        json.dumps(context),
        reason,
        now,
    )
    assert row is not None
    return _escalation(row)


async def get_escalation(
    connection: Connection, workspace_id: str, escalation_id: str, *, for_update: bool = False
) -> EscalationRecord | None:
    """One escalation, or None."""
    query = queries.get_escalation_for_update if for_update else queries.get_escalation
    row = await connection.fetchrow(query, workspace_id, escalation_id)
    return _escalation(row) if row else None


async def decide_escalation(
    connection: Connection,
    workspace_id: str,
    escalation_id: str,
    *,
    state: str,
    now: datetime,
    decided_by: str,
    note: str,
    grant_id: str,
) -> EscalationRecord:
    """Records an admin's decision."""
    row = await connection.fetchrow(
        queries.decide_escalation,
        workspace_id,
        escalation_id,
        state,
        now,
        decided_by,
        note,
        grant_id,
    )
    assert row is not None
    return _escalation(row)


async def list_escalations(
    connection: Connection,
    workspace_id: str,
    state: str,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    oldest_first: bool = False,
) -> list[EscalationRecord]:
    """A page of escalations, newest first (or oldest first), after the (created_at, id)
    cursor."""
    rows = await connection.fetch(
        queries.list_escalations_oldest_first if oldest_first else queries.list_escalations,
        workspace_id,
        state,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return [_escalation(row) for row in rows]


async def finish_escalation(
    connection: Connection,
    workspace_id: str,
    escalation_id: str,
    *,
    state: str,
    stripe_object_id: str,
    failure_reason: str,
    now: datetime,
) -> EscalationRecord:
    """Records how carrying out an approved escalation ended (executed or failed)."""
    row = await connection.fetchrow(
        queries.finish_escalation,
        workspace_id,
        escalation_id,
        state,
        stripe_object_id,
        failure_reason,
        now,
    )
    assert row is not None
    return _escalation(row)
