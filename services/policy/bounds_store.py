"""Storage of the bounds: the bounds in force of each workspace and the changes admins
propose to them; the only module that runs their SQL (bounds_queries.sql)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from policy.domain.bounds import AskVaultPlan, Bounds
from policy.domain.model import Money
from policy.domain.periods import Period
from runtime.database import Connection, Queries

queries = Queries("policy", "bounds_queries.sql")


def bounds_to_json(bounds: Bounds) -> str:
    """The stored form of proposed bounds (same shape as a bounds row)."""
    return json.dumps(
        {
            "askvault_plan": bounds.askvault_plan.value,
            "refund_caps": [
                {"currency": cap.currency, "amount_minor": cap.amount_minor}
                for cap in bounds.refund_caps
            ],
            "refund_window_seconds": bounds.refund_window.total_seconds(),
            "plan_changes_per_period": bounds.plan_changes_per_period,
            "cancellation_grace_seconds": bounds.cancellation_grace.total_seconds(),
            "confirm_refunds": bounds.confirm_refunds,
            "confirm_plan_changes": bounds.confirm_plan_changes,
            "counter_period": bounds.counter_period.value,
            "time_zone": bounds.time_zone,
            "self_serve_price_ids": list(bounds.self_serve_price_ids),
            "resubscriptions_per_period": bounds.resubscriptions_per_period,
        }
    )


def _caps(raw: Any) -> tuple[Money, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(Money(int(item["amount_minor"]), str(item["currency"])) for item in items)


def bounds_from_json(raw: str) -> Bounds:
    """Proposed bounds from their stored form."""
    data = json.loads(raw)
    return Bounds(
        askvault_plan=AskVaultPlan(data["askvault_plan"]),
        refund_caps=_caps(data["refund_caps"]),
        refund_window=timedelta(seconds=data["refund_window_seconds"]),
        plan_changes_per_period=int(data["plan_changes_per_period"]),
        cancellation_grace=timedelta(seconds=data["cancellation_grace_seconds"]),
        confirm_refunds=bool(data["confirm_refunds"]),
        confirm_plan_changes=bool(data["confirm_plan_changes"]),
        counter_period=Period(data["counter_period"]),
        time_zone=str(data.get("time_zone") or "UTC"),
        self_serve_price_ids=tuple(data.get("self_serve_price_ids") or ()),
        # Proposals from before resubscriptions had their own limit counted them as plan
        # changes (as migration 0007 does for the bounds in force).
        resubscriptions_per_period=int(
            data.get("resubscriptions_per_period", data["plan_changes_per_period"])
        ),
    )


def _bounds(row: asyncpg.Record) -> Bounds:
    return Bounds(
        askvault_plan=AskVaultPlan(row["askvault_plan"]),
        refund_caps=_caps(row["refund_caps"]),
        refund_window=row["refund_window"],
        plan_changes_per_period=row["plan_changes_per_period"],
        cancellation_grace=row["cancellation_grace"],
        confirm_refunds=row["confirm_refunds"],
        confirm_plan_changes=row["confirm_plan_changes"],
        counter_period=Period(row["counter_period"]),
        time_zone=row["time_zone"],
        self_serve_price_ids=tuple(row["self_serve_price_ids"]),
        resubscriptions_per_period=row["resubscriptions_per_period"],
        updated_at=row["updated_at"],
    )


async def get_bounds(connection: Connection, workspace_id: str) -> Bounds | None:
    """The workspace's stored bounds, or None when an admin never set any."""
    row = await connection.fetchrow(queries.get_bounds, workspace_id)
    return _bounds(row) if row else None


async def claim_with_bounds(
    connection: Connection, workspace_id: str, key: str, method: str, fingerprint: bytes
) -> tuple[bool, Bounds | None]:
    """Claims the idempotency key (as ``runtime.idempotency.claim``'s first step) and reads
    the workspace's stored bounds, in one round trip: (claimed, bounds or None)."""
    row = await connection.fetchrow(
        queries.claim_with_bounds, workspace_id, key, method, fingerprint
    )
    assert row is not None
    return bool(row["claimed"]), _bounds(row) if row["workspace_id"] is not None else None


async def save_bounds(
    connection: Connection, workspace_id: str, bounds: Bounds, now: datetime
) -> Bounds:
    """Puts bounds in force."""
    caps = json.loads(bounds_to_json(bounds))["refund_caps"]
    row = await connection.fetchrow(
        queries.upsert_bounds,
        workspace_id,
        bounds.askvault_plan.value,
        json.dumps(caps),
        bounds.refund_window,
        bounds.plan_changes_per_period,
        bounds.cancellation_grace,
        bounds.confirm_refunds,
        bounds.confirm_plan_changes,
        bounds.counter_period.value,
        now,
        bounds.time_zone,
        list(bounds.self_serve_price_ids),
        bounds.resubscriptions_per_period,
    )
    assert row is not None
    return _bounds(row)


@dataclass(frozen=True)
class BoundsChangeRecord:
    """A stored bounds change."""

    workspace_id: str
    change_id: str
    proposed: Bounds
    state: str  # pending, applied, superseded
    proposed_by: str
    approved_by: str
    loosened_fields: list[str]
    created_at: datetime
    applied_at: datetime | None


def _change(row: asyncpg.Record) -> BoundsChangeRecord:
    return BoundsChangeRecord(
        workspace_id=row["workspace_id"],
        change_id=row["change_id"],
        proposed=bounds_from_json(row["proposed"]),
        state=row["state"],
        proposed_by=row["proposed_by"],
        approved_by=row["approved_by"],
        loosened_fields=list(row["loosened_fields"]),
        created_at=row["created_at"],
        applied_at=row["applied_at"],
    )


async def insert_bounds_change(
    connection: Connection,
    workspace_id: str,
    change_id: str,
    proposed: Bounds,
    *,
    pending: bool,
    proposed_by: str,
    loosened_fields: Sequence[str],
    now: datetime,
) -> BoundsChangeRecord:
    """Records a change; earlier pending changes are superseded by it."""
    await connection.execute(queries.supersede_pending_changes, workspace_id)
    row = await connection.fetchrow(
        queries.insert_bounds_change,
        workspace_id,
        change_id,
        bounds_to_json(proposed),
        "pending" if pending else "applied",
        proposed_by,
        "",
        list(loosened_fields),
        now,
        None if pending else now,
    )
    assert row is not None
    return _change(row)


async def get_bounds_change_for_update(
    connection: Connection, workspace_id: str, change_id: str
) -> BoundsChangeRecord | None:
    """One change, locked."""
    row = await connection.fetchrow(queries.get_bounds_change_for_update, workspace_id, change_id)
    return _change(row) if row else None


async def apply_bounds_change(
    connection: Connection, workspace_id: str, change_id: str, approved_by: str, now: datetime
) -> BoundsChangeRecord:
    """Marks a pending change applied by its second admin."""
    row = await connection.fetchrow(
        queries.apply_bounds_change, workspace_id, change_id, approved_by, now
    )
    assert row is not None
    return _change(row)


async def list_bounds_changes(
    connection: Connection, workspace_id: str, state: str
) -> list[BoundsChangeRecord]:
    """The workspace's changes, newest first ("" state lists all)."""
    rows = await connection.fetch(queries.list_bounds_changes, workspace_id, state)
    return [_change(row) for row in rows]
