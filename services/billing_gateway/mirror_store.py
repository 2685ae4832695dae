"""Storage of the mirror of Stripe: the objects held per workspace, the backfill of each
workspace and its catch-up with Stripe's events list; the only module that runs their SQL
(mirror_queries.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runtime.database import Connection, Queries

queries = Queries("billing_gateway", "mirror_queries.sql")


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


async def mirrored_charge_customer(
    connection: Connection, workspace_id: str, charge_id: str
) -> str:
    """The customer of a held charge ("" when the charge is not held)."""
    customer: str | None = await connection.fetchval(
        queries.mirrored_charge_customer, workspace_id, charge_id
    )
    return customer or ""
