"""The billing gateway's storage: the only module that runs its SQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from billing_gateway.domain.recovery import CaseOutcome
from runtime.database import Connection, Queries

queries = Queries("billing_gateway")

# Operation states, as stored.
SCHEDULED = "scheduled"
IN_FLIGHT = "in_flight"
SUCCEEDED = "succeeded"
FAILED = "failed"
VOIDED = "voided"
TERMINAL = frozenset({SUCCEEDED, FAILED, VOIDED})


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


@dataclass(frozen=True)
class OperationRecord:
    """One row of the ledger."""

    workspace_id: str
    operation_id: str
    idempotency_key: str
    fingerprint: bytes
    action: str
    state: str
    grant_id: str
    stripe_customer_id: str
    target_id: str
    parameters: dict[str, Any]
    stripe_object_id: str
    error_reason: str
    run_at: datetime | None
    grant_resolution: str
    created_at: datetime
    updated_at: datetime
    response: bytes | None = None


@dataclass(frozen=True)
class StoredEvent:
    """A webhook event as stored by ingestion."""

    workspace_id: str
    event_id: str
    event_type: str
    created_at: datetime
    payload: bytes
    attempts: int


@dataclass(frozen=True)
class CaseRecord:
    """A recovery case."""

    workspace_id: str
    case_id: str
    stripe_customer_id: str
    invoice_id: str
    amount_due_minor: int
    currency: str
    state: str
    opened_at: datetime
    closed_at: datetime | None


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


def _operation(row: asyncpg.Record) -> OperationRecord:
    parameters = row["parameters"]
    return OperationRecord(
        workspace_id=row["workspace_id"],
        operation_id=row["operation_id"],
        idempotency_key=row["idempotency_key"],
        fingerprint=bytes(row["fingerprint"]),
        action=row["action"],
        state=row["state"],
        grant_id=row["grant_id"],
        stripe_customer_id=row["stripe_customer_id"],
        target_id=row["target_id"],
        parameters=json.loads(parameters) if isinstance(parameters, str) else dict(parameters),
        stripe_object_id=row["stripe_object_id"],
        error_reason=row["error_reason"],
        run_at=row["run_at"],
        grant_resolution=row["grant_resolution"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        response=bytes(row["response"]) if row["response"] is not None else None,
    )


def _case(row: asyncpg.Record) -> CaseRecord:
    return CaseRecord(
        workspace_id=row["workspace_id"],
        case_id=row["case_id"],
        stripe_customer_id=row["stripe_customer_id"],
        invoice_id=row["invoice_id"],
        amount_due_minor=row["amount_due_minor"],
        currency=row["currency"],
        state=row["state"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
    )


# accounts


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


# operations


async def insert_operation(
    connection: Connection,
    *,
    workspace_id: str,
    operation_id: str,
    idempotency_key: str,
    fingerprint: bytes,
    action: str,
    state: str,
    grant_id: str,
    stripe_customer_id: str,
    target_id: str,
    parameters: dict[str, Any],
    run_at: datetime | None = None,
    trace_context: dict[str, str] | None = None,
    confirmation: dict[str, Any] | None = None,
) -> OperationRecord | None:
    """Records a new operation (with the confirmation it owes the customer once done,
    confirmation_outbox.py); None when the idempotency key already has one."""
    row = await connection.fetchrow(
        queries.insert_operation,
        workspace_id,
        operation_id,
        idempotency_key,
        fingerprint,
        action,
        state,
        grant_id,
        stripe_customer_id,
        target_id,
        json.dumps(parameters),
        run_at,
        json.dumps(trace_context or {}),
        json.dumps(confirmation) if confirmation is not None else None,
    )
    return _operation(row) if row else None


async def operation_by_key(
    connection: Connection, workspace_id: str, idempotency_key: str
) -> OperationRecord | None:
    """The operation made under this idempotency key."""
    row = await connection.fetchrow(queries.get_operation_by_key, workspace_id, idempotency_key)
    return _operation(row) if row else None


async def get_operation(
    connection: Connection, workspace_id: str, operation_id: str, *, for_update: bool = False
) -> OperationRecord | None:
    """One operation, optionally locked until the transaction ends."""
    query = queries.lock_operation if for_update else queries.get_operation
    row = await connection.fetchrow(query, workspace_id, operation_id)
    return _operation(row) if row else None


async def update_operation(
    connection: Connection,
    operation: OperationRecord,
    *,
    state: str,
    stripe_object_id: str = "",
    error_reason: str = "",
    run_at: datetime | None = None,
    response: bytes | None = None,
) -> OperationRecord:
    """Moves an operation to a new state (with the response to replay, when it succeeded)."""
    row = await connection.fetchrow(
        queries.update_operation,
        operation.workspace_id,
        operation.operation_id,
        state,
        stripe_object_id or operation.stripe_object_id,
        error_reason,
        run_at if run_at is not None else operation.run_at,
        response,
    )
    assert row is not None
    return _operation(row)


async def set_grant_resolution(
    connection: Connection, operation: OperationRecord, resolution: str
) -> None:
    """Records that the grant was committed or released at policy."""
    await connection.execute(
        queries.set_grant_resolution, operation.workspace_id, operation.operation_id, resolution
    )


async def claim_due_scheduled(connection: Connection, now: datetime) -> OperationRecord | None:
    """A due scheduled operation, locked (skipping those another replica holds)."""
    row = await connection.fetchrow(queries.claim_due_scheduled, now)
    return _operation(row) if row else None


async def claim_in_flight(
    connection: Connection, older_than: datetime, skip: Sequence[str]
) -> OperationRecord | None:
    """An in-flight operation last touched before the time, locked."""
    row = await connection.fetchrow(queries.claim_in_flight, older_than, list(skip))
    return _operation(row) if row else None


async def claim_unresolved(connection: Connection, skip: Sequence[str]) -> OperationRecord | None:
    """A finished operation whose grant was not yet committed or released, locked."""
    row = await connection.fetchrow(queries.claim_unresolved, list(skip))
    return _operation(row) if row else None


async def pending_cancellation(
    connection: Connection, workspace_id: str, stripe_customer_id: str, subscription_id: str = ""
) -> OperationRecord | None:
    """The customer's scheduled cancellation (of the subscription, when given)."""
    row = await connection.fetchrow(
        queries.pending_cancellation, workspace_id, stripe_customer_id, subscription_id
    )
    return _operation(row) if row else None


# webhook inbox


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


# recovery


async def open_case(
    connection: Connection,
    *,
    workspace_id: str,
    case_id: str,
    stripe_customer_id: str,
    invoice_id: str,
    amount_due_minor: int,
    currency: str,
    opened_at: datetime,
) -> CaseRecord | None:
    """Opens a case for the invoice; None when it already has one."""
    row = await connection.fetchrow(
        queries.open_case,
        workspace_id,
        case_id,
        stripe_customer_id,
        invoice_id,
        amount_due_minor,
        currency,
        opened_at,
    )
    return _case(row) if row else None


async def case_by_invoice(
    connection: Connection, workspace_id: str, invoice_id: str
) -> CaseRecord | None:
    """The invoice's case, locked."""
    row = await connection.fetchrow(queries.case_by_invoice, workspace_id, invoice_id)
    return _case(row) if row else None


async def close_case(
    connection: Connection, case: CaseRecord, state: str, closed_at: datetime
) -> CaseRecord | None:
    """Closes an open case; None when it was not open."""
    row = await connection.fetchrow(
        queries.close_case, case.workspace_id, case.case_id, state, closed_at
    )
    return _case(row) if row else None


async def open_cases_of_customer(
    connection: Connection, workspace_id: str, stripe_customer_id: str
) -> list[CaseRecord]:
    """The customer's open cases, locked."""
    rows = await connection.fetch(queries.open_cases_of_customer, workspace_id, stripe_customer_id)
    return [_case(row) for row in rows]


async def add_case_event(
    connection: Connection,
    case: CaseRecord,
    occurred_at: datetime,
    kind: str,
    detail: str,
    source_id: str,
) -> None:
    """Appends to the case's timeline, once per source and kind."""
    await connection.execute(
        queries.add_case_event,
        case.workspace_id,
        case.case_id,
        occurred_at,
        kind,
        detail,
        source_id,
    )


async def list_cases(
    connection: Connection,
    workspace_id: str,
    state: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[CaseRecord]:
    """A page of cases, newest first, after the (opened_at, case_id) cursor."""
    rows = await connection.fetch(
        queries.list_cases,
        workspace_id,
        state,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return [_case(row) for row in rows]


async def case_events(
    connection: Connection, workspace_id: str, case_ids: Sequence[str]
) -> dict[str, list[tuple[datetime, str, str]]]:
    """case id -> its timeline (time, kind, detail) in order."""
    found: dict[str, list[tuple[datetime, str, str]]] = {}
    for row in await connection.fetch(queries.case_events, workspace_id, list(case_ids)):
        found.setdefault(row["case_id"], []).append(
            (row["occurred_at"], row["kind"], row["detail"])
        )
    return found


async def case_outcomes(
    connection: Connection, workspace_id: str, start: datetime, end: datetime
) -> list[CaseOutcome]:
    """Outcomes of the cases opened in [start, end)."""
    rows = await connection.fetch(queries.cases_opened_between, workspace_id, start, end)
    return [CaseOutcome(row["opened_at"], row["state"], row["closed_at"]) for row in rows]


# the mirror of Stripe


@dataclass(frozen=True)
class MirroredObject:
    """One Stripe object as the mirror holds it."""

    object_type: str
    object_id: str
    customer_id: str
    data: dict[str, Any]
    version_time: int
    version_source: str
    deleted: bool
    confirmed_at: datetime


def _mirrored(row: asyncpg.Record) -> MirroredObject:
    data = row["data"]
    return MirroredObject(
        object_type=row["object_type"],
        object_id=row["object_id"],
        customer_id=row["customer_id"],
        data=json.loads(data) if isinstance(data, str) else dict(data),
        version_time=int(row["version_time"]),
        version_source=row["version_source"],
        deleted=row["deleted"],
        confirmed_at=row["confirmed_at"],
    )


async def lock_mirrored(
    connection: Connection, workspace_id: str, object_type: str, object_id: str
) -> tuple[int, dict[str, Any], bool] | None:
    """(version time, data, deleted) of a held object, its row locked until the transaction
    ends (two versions of one object are decided one after the other); None if not held."""
    row = await connection.fetchrow(queries.lock_mirrored, workspace_id, object_type, object_id)
    if row is None:
        return None
    data = row["data"]
    return (
        int(row["version_time"]),
        json.loads(data) if isinstance(data, str) else dict(data),
        bool(row["deleted"]),
    )


async def store_mirrored(
    connection: Connection,
    workspace_id: str,
    object_type: str,
    object_id: str,
    *,
    customer_id: str,
    created: int,
    status: str,
    data: dict[str, Any],
    version_time: int,
    version_source: str,
    deleted: bool,
) -> None:
    """Stores (or replaces) a version of an object, confirmed at its version time."""
    await connection.execute(
        queries.store_mirrored,
        workspace_id,
        object_type,
        object_id,
        customer_id,
        created,
        status,
        # The SDK hands decimals (unit_amount_decimal) as Decimal; Stripe sends them as strings.
        json.dumps(data, default=str),
        version_time,
        version_source,
        deleted,
    )


async def confirm_mirrored(
    connection: Connection, workspace_id: str, object_type: str, object_id: str, at: int
) -> None:
    """Stripe showed the held version again at ``at`` (Unix seconds)."""
    await connection.execute(queries.confirm_mirrored, workspace_id, object_type, object_id, at)


async def get_mirrored(
    connection: Connection, workspace_id: str, object_type: str, object_id: str
) -> MirroredObject | None:
    """A held object (deleted ones included), or None."""
    row = await connection.fetchrow(queries.get_mirrored, workspace_id, object_type, object_id)
    return _mirrored(row) if row is not None else None


@dataclass(frozen=True)
class MirrorQuery:
    """Which of a customer's objects of one type to list, newest first."""

    created_gte: int | None = None
    created_lt: int | None = None
    status: str = ""
    # The (created, id) of the last object of the previous page.
    after: tuple[int, str] | None = None
    limit: int = 100


async def mirrored_of_customer(
    connection: Connection,
    workspace_id: str,
    object_type: str,
    customer_id: str,
    query: MirrorQuery,
) -> list[MirroredObject]:
    """A customer's objects of one type, not deleted, newest first."""
    rows = await connection.fetch(
        queries.mirrored_of_customer,
        workspace_id,
        object_type,
        customer_id,
        query.created_gte,
        query.created_lt,
        query.status,
        query.after[0] if query.after else None,
        query.after[1] if query.after else "",
        query.limit,
    )
    return [_mirrored(row) for row in rows]


async def customer_and_objects(
    connection: Connection, workspace_id: str, customer_id: str, object_type: str, limit: int = 100
) -> tuple[MirroredObject | None, list[MirroredObject]]:
    """``get_mirrored`` of the customer (deleted or not) and ``mirrored_of_customer`` of its
    objects of one type (not deleted, newest first, at most ``limit``), in one query."""
    rows = await connection.fetch(
        queries.customer_and_objects, workspace_id, customer_id, object_type, limit
    )
    customer = _mirrored(rows[0]) if rows and rows[0]["part"] == 0 else None
    return customer, [_mirrored(row) for row in rows if row["part"] == 1]


async def mirrored_of_type(
    connection: Connection, workspace_id: str, object_type: str
) -> list[MirroredObject]:
    """Every held object of a type (the catalog), not deleted, newest first."""
    rows = await connection.fetch(queries.mirrored_of_type, workspace_id, object_type)
    return [_mirrored(row) for row in rows]


async def count_mirrored(connection: Connection, workspace_id: str) -> int:
    """How many objects the workspace's mirror holds."""
    return int(await connection.fetchval(queries.count_mirrored, workspace_id))


async def start_mirror(
    connection: Connection, workspace_id: str, caught_up_to: int, lists: Sequence[str]
) -> None:
    """Starts (or restarts) the backfill of every list, and the catch-up from a time."""
    await connection.execute(queries.start_mirror, workspace_id, caught_up_to)
    for object_type in lists:
        await connection.execute(queries.start_backfill, workspace_id, object_type)


@dataclass(frozen=True)
class BackfillRecord:
    """The backfill of one Stripe list of a workspace."""

    workspace_id: str
    object_type: str
    cursor: str
    done: bool
    objects_copied: int
    pages_copied: int
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str


def _backfill(row: asyncpg.Record) -> BackfillRecord:
    return BackfillRecord(
        workspace_id=row["workspace_id"],
        object_type=row["object_type"],
        cursor=row["cursor"],
        done=row["done"],
        objects_copied=int(row["objects_copied"]),
        pages_copied=int(row["pages_copied"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
    )


async def claim_backfill(connection: Connection) -> BackfillRecord | None:
    """The next due unfinished backfill, locked (skipping those another replica holds)."""
    row = await connection.fetchrow(queries.claim_backfill)
    return _backfill(row) if row is not None else None


async def advance_backfill(
    connection: Connection, backfill: BackfillRecord, cursor: str, done: bool, copied: int
) -> None:
    """One more page copied: the cursor moves on (same transaction as the copies)."""
    await connection.execute(
        queries.advance_backfill,
        backfill.workspace_id,
        backfill.object_type,
        cursor,
        done,
        copied,
    )


async def defer_backfill(
    connection: Connection, backfill: BackfillRecord, error: str, delay_seconds: float
) -> None:
    """A page could not be copied: try again later from the same cursor."""
    await connection.execute(
        queries.defer_backfill,
        backfill.workspace_id,
        backfill.object_type,
        error[:500],
        delay_seconds,
    )


async def backfills_of(connection: Connection, workspace_id: str) -> list[BackfillRecord]:
    """Every list's backfill of a workspace."""
    return [_backfill(row) for row in await connection.fetch(queries.backfills_of, workspace_id)]


@dataclass(frozen=True)
class MirrorWorkspace:
    """A workspace's mirror settings and catch-up position."""

    workspace_id: str
    max_age_seconds: int | None
    caught_up_to: int | None
    connected_at: int | None = None


def _mirror_workspace(row: asyncpg.Record) -> MirrorWorkspace:
    caught, connected = row["caught_up_to"], row["connected_at"]
    return MirrorWorkspace(
        row["workspace_id"],
        row["max_age_seconds"],
        int(caught) if caught is not None else None,
        int(connected) if connected is not None else None,
    )


async def mirror_workspace(connection: Connection, workspace_id: str) -> MirrorWorkspace | None:
    """The workspace's mirror row, or None before it was ever connected."""
    row = await connection.fetchrow(queries.mirror_workspace, workspace_id)
    return _mirror_workspace(row) if row is not None else None


async def set_mirror_max_age(
    connection: Connection, workspace_id: str, seconds: int | None
) -> MirrorWorkspace:
    """Sets the workspace's freshness bound (None: the service default)."""
    row = await connection.fetchrow(queries.set_mirror_max_age, workspace_id, seconds)
    assert row is not None
    return _mirror_workspace(row)


async def claim_catch_up(connection: Connection) -> MirrorWorkspace | None:
    """The next workspace due a catch-up, locked (skipping those another replica holds)."""
    row = await connection.fetchrow(queries.claim_catch_up)
    return _mirror_workspace(row) if row is not None else None


async def finish_catch_up(
    connection: Connection, workspace_id: str, caught_up_to: int, next_in_seconds: float
) -> None:
    """Every event up to ``caught_up_to`` is in the inbox; look again after a pause."""
    await connection.execute(queries.finish_catch_up, workspace_id, caught_up_to, next_in_seconds)


@dataclass(frozen=True)
class MirrorFreshness:
    """What deciding whether the mirror may answer needs of a workspace."""

    max_age_seconds: int | None
    caught_up_to: int | None
    backfilled: bool


async def mirror_freshness(connection: Connection, workspace_id: str) -> MirrorFreshness:
    """The workspace's bound, catch-up position and backfill completion, in one query."""
    row = await connection.fetchrow(queries.mirror_freshness, workspace_id)
    assert row is not None
    caught = row["caught_up_to"]
    return MirrorFreshness(
        row["max_age_seconds"], int(caught) if caught is not None else None, row["backfilled"]
    )


async def get_mirrored_many(
    connection: Connection, workspace_id: str, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], MirroredObject]:
    """Held objects by (type, id), in one query; those not held are absent."""
    if not keys:
        return {}
    rows = await connection.fetch(
        queries.get_mirrored_many,
        workspace_id,
        [object_type for object_type, _ in keys],
        [object_id for _, object_id in keys],
    )
    found = [_mirrored(row) for row in rows]
    return {(held.object_type, held.object_id): held for held in found}


async def customers_by_email(
    connection: Connection, workspace_id: str, email: str
) -> list[MirroredObject]:
    """Held customers (not deleted) with the email, case-insensitively."""
    rows = await connection.fetch(queries.customers_by_email, workspace_id, email)
    return [_mirrored(row) for row in rows]


async def customers_by_metadata(
    connection: Connection, workspace_id: str, metadata_key: str, value: str
) -> list[MirroredObject]:
    """Held customers (not deleted) whose metadata holds exactly this value under the key."""
    rows = await connection.fetch(queries.customers_by_metadata, workspace_id, metadata_key, value)
    return [_mirrored(row) for row in rows]


async def lock_escalation(connection: Connection, workspace_id: str, escalation_id: str) -> None:
    """Waits for (then holds, until the transaction ends) the escalation's decision lock."""
    await connection.execute(queries.lock_escalation, workspace_id, escalation_id)
