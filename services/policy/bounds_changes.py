"""Changes to a workspace's bounds: an admin proposes new bounds (applied at once when they
only tighten; pending a second, different admin's approval when they loosen anything), a
second admin approves a pending change, and admins list them. Each change runs in one
transaction with its idempotency key and its audit entry.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from askvault.policy.v1 import policy_pb2 as pb
from policy import audit_log, bounds_store, convert, entries
from policy.domain import audit, bounds
from runtime import errors, idempotency, ids
from runtime.database import Connection


async def propose(
    pool: asyncpg.Pool,
    audit_keys: audit.MacKeys,
    request: pb.ProposeBoundsChangeRequest,
    *,
    defaults: bounds.Bounds,
    admin: str,
    now: datetime,
) -> pb.ProposeBoundsChangeResponse:
    """The request's bounds (completed from ``defaults``) applied, or pending when they
    loosen a field; bounds that make no sense are INVALID_ARGUMENT. ``request`` is
    validated."""
    proposed = convert.bounds_from_pb(request.bounds, defaults.counter_period, defaults.time_zone)
    bounds.validate(proposed)

    async def propose(connection: Connection) -> pb.ProposeBoundsChangeResponse:
        current = await bounds_store.get_bounds(connection, request.workspace_id)
        loosened = bounds.loosened_fields(proposed, defaults, current)
        change = await bounds_store.insert_bounds_change(
            connection,
            request.workspace_id,
            ids.new_id("bc"),
            proposed,
            pending=bool(loosened),
            proposed_by=admin,
            loosened_fields=loosened,
            now=now,
        )
        if not loosened:
            await bounds_store.save_bounds(connection, request.workspace_id, proposed, now)
        await audit_log.record(
            connection,
            audit_keys,
            request.workspace_id,
            [
                entries.entry(
                    now,
                    "bounds.applied" if not loosened else "bounds.proposed",
                    actor=("admin", admin),
                    outcome="APPLIED" if not loosened else "PENDING:" + ",".join(loosened),
                    subject_id=change.change_id,
                )
            ],
        )
        return pb.ProposeBoundsChangeResponse(change=convert.change_pb(change))

    return await idempotency.run_once(
        pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.ProposeBoundsChangeResponse,
        propose,
    )


async def approve(
    pool: asyncpg.Pool,
    audit_keys: audit.MacKeys,
    request: pb.ApproveBoundsChangeRequest,
    *,
    admin: str,
    now: datetime,
) -> pb.ApproveBoundsChangeResponse:
    """A pending change applied by an admin other than its proposer."""

    async def approve(connection: Connection) -> pb.ApproveBoundsChangeResponse:
        change = await bounds_store.get_bounds_change_for_update(
            connection, request.workspace_id, request.change_id
        )
        if change is None:
            raise errors.not_found("bounds change")
        if change.state != "pending":
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "NOT_PENDING",
                f"the change is already {change.state}",
            )
        if change.proposed_by == admin:
            raise errors.ServiceError(
                errors.Kind.PERMISSION_DENIED,
                "SECOND_ADMIN_REQUIRED",
                "a second, different admin must approve this change",
            )
        applied = await bounds_store.apply_bounds_change(
            connection, request.workspace_id, request.change_id, admin, now
        )
        await bounds_store.save_bounds(connection, request.workspace_id, applied.proposed, now)
        await audit_log.record(
            connection,
            audit_keys,
            request.workspace_id,
            [
                entries.entry(
                    now,
                    "bounds.applied",
                    actor=("admin", admin),
                    outcome="APPROVED:" + ",".join(applied.loosened_fields),
                    subject_id=applied.change_id,
                )
            ],
        )
        return pb.ApproveBoundsChangeResponse(change=convert.change_pb(applied))

    return await idempotency.run_once(
        pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.ApproveBoundsChangeResponse,
        approve,
    )


async def list_changes(
    pool: asyncpg.Pool, request: pb.ListBoundsChangesRequest
) -> pb.ListBoundsChangesResponse:
    """The workspace's bounds changes, by state."""
    async with pool.acquire() as connection:
        records = await bounds_store.list_bounds_changes(
            connection,
            request.workspace_id,
            convert.CHANGE_STATE_FROM_PB.get(request.state, ""),
        )
    return pb.ListBoundsChangesResponse(changes=[convert.change_pb(r) for r in records])
