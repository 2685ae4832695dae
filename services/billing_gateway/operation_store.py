"""Storage of the operation ledger: each money action's row from scheduled or in flight to
its outcome, the grant it was made under, and the writes a restore takes back; the only module
that runs the ledger's SQL (operation_queries.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runtime.database import Connection, Queries

queries = Queries("billing_gateway", "operation_queries.sql")

# Operation states, as stored.
SCHEDULED = "scheduled"
IN_FLIGHT = "in_flight"
SUCCEEDED = "succeeded"
FAILED = "failed"
VOIDED = "voided"
TERMINAL = frozenset({SUCCEEDED, FAILED, VOIDED})


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


async def lock_escalation(connection: Connection, workspace_id: str, escalation_id: str) -> None:
    """Waits for (then holds, until the transaction ends) the escalation's decision lock."""
    await connection.execute(queries.lock_escalation, workspace_id, escalation_id)


# taking back writes Stripe shows done (adopting.py)


async def operation_exists(connection: Connection, workspace_id: str, operation_id: str) -> bool:
    """Whether the ledger has the operation, in any state."""
    return bool(await connection.fetchval(queries.operation_exists, workspace_id, operation_id))


async def correct_not_performed(
    connection: Connection, workspace_id: str, operation_id: str, stripe_object_id: str
) -> bool:
    """Succeeded after all: an operation settled as not performed that a Stripe event shows
    done (its grant left unresolved again); whether it was such an operation."""
    corrected = await connection.fetchval(
        queries.correct_not_performed, workspace_id, operation_id, stripe_object_id
    )
    return corrected is not None


async def adopt_operation(
    connection: Connection,
    *,
    workspace_id: str,
    operation_id: str,
    idempotency_key: str,
    action: str,
    grant_id: str,
    stripe_customer_id: str,
    target_id: str,
    parameters: dict[str, Any],
    stripe_object_id: str,
) -> bool:
    """Records a write Stripe shows done as a succeeded operation; False when the operation
    or the idempotency key is taken."""
    inserted = await connection.fetchval(
        queries.adopt_operation,
        workspace_id,
        operation_id,
        idempotency_key,
        action,
        grant_id,
        stripe_customer_id,
        target_id,
        json.dumps(parameters),
        stripe_object_id,
    )
    return inserted is not None
