"""Idempotency keys stored beside the effect they guard.

Each service's schema has an ``idempotency_keys`` table (created by its first migration
with ``IDEMPOTENCY_TABLE_DDL``). ``claim`` runs inside the transaction that makes the
effect: the first caller inserts the key and goes on; a concurrent duplicate waits on the
key's row lock until the first commits, then replays the saved response. A rolled-back
attempt leaves no key, so a retry after a failure runs again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from google.protobuf.message import Message

from runtime import errors
from runtime.database import Connection

IDEMPOTENCY_TABLE_DDL = """
CREATE TABLE idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    method text NOT NULL,
    fingerprint bytea NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, idempotency_key)
);
"""


# The field carrying the visitor's identity assertion in customer-scoped requests.
ASSERTION_FIELD = "identity_assertion"


def fingerprint(
    request: Message, key_field: str = "idempotency_key", principal: str | None = None
) -> bytes:
    """SHA-256 of the request without its key: what "the same parameters" means.

    With ``principal`` (who the verified assertion names, e.g. ``contact:customer``), the
    assertion itself is left out and the principal counts instead: a client retrying after a
    lost answer has its visitor verified again, which issues a new assertion, and must get
    the first answer, while another person's call under the same key stays a mismatch."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField(key_field)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    if principal is not None:
        if ASSERTION_FIELD in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(ASSERTION_FIELD)  # type: ignore[arg-type]
        digest.update(b"principal\x00" + principal.encode() + b"\x00")
    digest.update(copy.SerializeToString(deterministic=True))
    return digest.digest()


def require_key(key: str, field_path: str = "idempotency_key") -> None:
    """Refuses a missing or oversized key."""
    check = errors.Validator()
    check.non_empty(key, field_path, max_length=200)
    check.check()


async def claim(
    connection: Connection,
    workspace_id: str,
    key: str,
    method: str,
    request_fingerprint: bytes,
) -> bytes | None:
    """Claims the key for this call (returns None) or returns the saved response of the call
    that claimed it. The same key with other parameters is INVALID_ARGUMENT
    IDEMPOTENCY_MISMATCH. Must run inside a transaction."""
    inserted = await connection.fetchval(
        "INSERT INTO idempotency_keys (workspace_id, idempotency_key, method, fingerprint)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        workspace_id,
        key,
        method,
        request_fingerprint,
    )
    if inserted:
        return None
    row = await connection.fetchrow(
        "SELECT method, fingerprint, response FROM idempotency_keys"
        " WHERE workspace_id = $1 AND idempotency_key = $2",
        workspace_id,
        key,
    )
    assert row is not None
    if row["method"] != method or bytes(row["fingerprint"]) != request_fingerprint:
        raise errors.ServiceError(
            errors.Kind.INVALID_ARGUMENT,
            "IDEMPOTENCY_MISMATCH",
            "this idempotency key was used with other parameters",
        )
    response: bytes | None = row["response"]
    if response is None:
        # Claimed by a transaction that committed without a response; treat as in progress.
        raise errors.ServiceError(
            errors.Kind.ABORTED, "OPERATION_STATE", "a call with this key is still in progress"
        )
    return bytes(response)


async def save(connection: Connection, workspace_id: str, key: str, response: Message) -> None:
    """Stores the response to replay for this key (same transaction as ``claim``)."""
    await connection.execute(
        "UPDATE idempotency_keys SET response = $3"
        " WHERE workspace_id = $1 AND idempotency_key = $2",
        workspace_id,
        key,
        response.SerializeToString(deterministic=True),
    )


ResponseT = TypeVar("ResponseT", bound=Message)


async def run_once(
    pool: asyncpg.Pool,
    workspace_id: str,
    key: str,
    request: Message,
    response_type: type[ResponseT],
    effect: Callable[[Connection], Awaitable[ResponseT]],
    principal: str | None = None,
) -> ResponseT:
    """Runs ``effect`` in one transaction with the key claimed, or replays the response the
    key already has. The effect's writes and the saved response commit together.
    ``principal``: who the request's verified assertion names (see ``fingerprint``)."""
    require_key(key)
    method = request.DESCRIPTOR.full_name
    request_fingerprint = fingerprint(request, principal=principal)
    async with pool.acquire() as connection, connection.transaction():
        saved = await claim(connection, workspace_id, key, method, request_fingerprint)
        if saved is not None:
            return response_type.FromString(saved)
        response = await effect(connection)
        await save(connection, workspace_id, key, response)
        return response
