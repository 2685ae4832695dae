"""The webhook inbox's storage (inbox_queries.sql): events as ingestion stores them, where
each stands, and the batch statements (claim a batch, finish a batch, the trace contexts of a
batch, a failed payment's case in one statement, and the failed-payment message each
invoice's customer is told, decided once)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from runtime.database import Connection, Queries

queries = Queries("billing_gateway", "inbox_queries.sql")

# An event's outcome and last error are kept to this many characters.
_TEXT_LIMIT = 500


@dataclass(frozen=True)
class StoredEvent:
    """A webhook event as stored by ingestion."""

    workspace_id: str
    event_id: str
    event_type: str
    created_at: datetime
    payload: bytes
    attempts: int


async def insert_event(
    connection: Connection,
    workspace_id: str,
    event_id: str,
    event_type: str,
    created_at: datetime,
    payload: bytes,
) -> bool:
    """Stores an event; False when it was already stored."""
    inserted = await connection.fetchval(
        queries.insert_event, workspace_id, event_id, event_type, created_at, payload
    )
    return bool(inserted)


@dataclass(frozen=True)
class EventStatus:
    """Where an event stands in the inbox."""

    event_id: str
    event_type: str
    processed_at: datetime | None
    attempts: int
    outcome: str
    last_error: str


async def get_event_status(
    connection: Connection, workspace_id: str, event_id: str
) -> EventStatus | None:
    """The inbox row of an event, or None."""
    row = await connection.fetchrow(queries.get_event_status, workspace_id, event_id)
    if row is None:
        return None
    return EventStatus(
        row["event_id"],
        row["event_type"],
        row["processed_at"],
        row["attempts"],
        row["outcome"],
        row["last_error"],
    )


async def make_events_due(connection: Connection, workspace_id: str) -> None:
    """Makes the workspace's deferred events due now (operators, after an outage; tests)."""
    await connection.execute(queries.make_events_due, workspace_id)


async def last_event_received_at(connection: Connection, workspace_id: str) -> datetime | None:
    """When the workspace's latest event arrived."""
    value: datetime | None = await connection.fetchval(queries.last_event_received_at, workspace_id)
    return value


@dataclass(frozen=True)
class WebhookHealth:
    """Events received lately and the latest processing error ("" / None: none)."""

    received: int
    last_error: str
    last_error_at: datetime | None


async def webhook_health(
    connection: Connection, workspace_id: str, since: datetime
) -> WebhookHealth:
    """Events received since ``since`` and the workspace's latest processing error."""
    row = await connection.fetchrow(queries.webhook_health, workspace_id, since)
    assert row is not None
    return WebhookHealth(int(row["received"]), row["error"] or "", row["error_at"])


@dataclass(frozen=True)
class PaymentFailedNotice:
    """The failed-payment message of one invoice as first decided: to whom, in what words."""

    recipients: list[notifier_pb2.Recipient]
    variables: dict[str, str]


@dataclass(frozen=True)
class Finished:
    """What became of one claimed event: processed (``delay_seconds`` None, with the effects
    that could not happen as its outcome), or deferred by ``delay_seconds`` with ``error``."""

    event: StoredEvent
    outcome: str = ""
    delay_seconds: float | None = None
    error: str = ""
    # False: a deferral that is no failed attempt (a rate limit waited out to its reopening).
    counts_attempt: bool = True


async def claim_events(connection: Connection, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` due unprocessed events, locked until the transaction ends (skipping
    those another worker or replica holds). Call inside a transaction."""
    rows = await connection.fetch(queries.claim_events, limit)
    return [
        StoredEvent(
            row["workspace_id"],
            row["event_id"],
            row["event_type"],
            row["event_created_at"],
            bytes(row["payload"]),
            row["attempts"],
        )
        for row in rows
    ]


async def lock_objects(connection: Connection, keys: Sequence[str]) -> set[str]:
    """Takes the transaction-scoped lock of each key that no other transaction holds; the
    keys now held (a key this transaction already holds counts)."""
    if not keys:
        return set()
    rows = await connection.fetch(queries.lock_event_objects, sorted(set(keys)))
    return {str(row["key"]) for row in rows}


async def lock_event(connection: Connection, workspace_id: str, event_id: str) -> bool:
    """Locks the event while it is unprocessed and unclaimed; False otherwise."""
    return bool(await connection.fetchval(queries.lock_unprocessed_event, workspace_id, event_id))


async def finish_events(connection: Connection, finished: Sequence[Finished]) -> None:
    """Marks every event processed or deferred, in one statement (in the claim's transaction:
    committed together with the events' local effects)."""
    if not finished:
        return
    await connection.execute(
        queries.finish_events,
        [item.event.workspace_id for item in finished],
        [item.event.event_id for item in finished],
        [item.outcome[:_TEXT_LIMIT] for item in finished],
        [item.delay_seconds for item in finished],
        [item.error[:_TEXT_LIMIT] for item in finished],
        [item.counts_attempt for item in finished],
    )


async def trace_contexts(
    connection: Connection, targets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[datetime, dict[str, str]]]:
    """(workspace, Stripe object id) -> when the newest recent operation of ours on that
    object was made, and its trace context; objects without one are absent."""
    if not targets:
        return {}
    rows = await connection.fetch(
        queries.trace_contexts_of_targets,
        [workspace_id for workspace_id, _ in targets],
        [target_id for _, target_id in targets],
    )
    newest: dict[tuple[str, str], tuple[datetime, dict[str, str]]] = {}
    for row in rows:
        key = (str(row["workspace_id"]), str(row["target_id"]))
        held = newest.get(key)
        if held is None or row["created_at"] > held[0]:
            newest[key] = (row["created_at"], dict(json.loads(row["trace_context"])))
    return newest


async def record_payment_failed(
    connection: Connection,
    *,
    workspace_id: str,
    case_id: str,
    stripe_customer_id: str,
    invoice_id: str,
    amount_due_minor: int,
    currency: str,
    occurred_at: datetime,
    source_id: str,
    entries: Sequence[tuple[str, str]],
) -> str | None:
    """Opens the invoice's case unless it has one, and appends ``entries`` (kind, detail) to
    its timeline once per source; the case id, or None when the case was opened by a
    transaction not visible to this statement (the caller then uses the slower path)."""
    found = await connection.fetchval(
        queries.record_payment_failed,
        workspace_id,
        case_id,
        stripe_customer_id,
        invoice_id,
        amount_due_minor,
        currency,
        occurred_at,
        source_id,
        [kind for kind, _ in entries],
        [detail for _, detail in entries],
    )
    return str(found) if found is not None else None


def _notice(row: asyncpg.Record) -> PaymentFailedNotice:
    return PaymentFailedNotice(
        recipients=[
            notifier_pb2.Recipient(
                contact_id=str(r.get("contact_id", "")),
                email=str(r.get("email", "")),
                whatsapp_number=str(r.get("whatsapp_number", "")),
                name=str(r.get("name", "")),
            )
            for r in json.loads(row["recipients"])
        ],
        variables={str(k): str(v) for k, v in json.loads(row["variables"]).items()},
    )


async def payment_failed_notice(
    connection: Connection, workspace_id: str, invoice_id: str
) -> PaymentFailedNotice | None:
    """The invoice's failed-payment message as decided (committed) before; None when none
    was."""
    row = await connection.fetchrow(queries.payment_failed_notice, workspace_id, invoice_id)
    return _notice(row) if row is not None else None


async def decide_payment_failed_notice(
    connection: Connection, workspace_id: str, invoice_id: str, notice: PaymentFailedNotice
) -> PaymentFailedNotice:
    """Records ``notice`` as the invoice's failed-payment message unless one was decided
    before; the one that stands (the earlier decision wins). Call outside the batch's
    transaction: the decision must be committed before the notifier is asked."""
    recipients = [
        {
            "contact_id": r.contact_id,
            "email": r.email,
            "whatsapp_number": r.whatsapp_number,
            "name": r.name,
        }
        for r in notice.recipients
    ]
    row = await connection.fetchrow(
        queries.decide_payment_failed_notice,
        workspace_id,
        invoice_id,
        json.dumps(recipients),
        json.dumps(notice.variables),
    )
    if row is None:
        # Decided by a transaction committed after the insert began: read it now.
        row = await connection.fetchrow(queries.payment_failed_notice, workspace_id, invoice_id)
        assert row is not None
    return _notice(row)
