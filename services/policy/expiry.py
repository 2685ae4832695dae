"""Expiry of grants nobody redeemed in time: a background worker, plus the same step run
lazily when a call touches a due grant.

The worker is safe in many replicas: each sweep works one workspace per transaction and
claims due grants with ``FOR UPDATE SKIP LOCKED``, so two replicas never expire the same
grant, and a grant being committed (row locked by Commit) is skipped, not waited for. Each
expiry frees its reservation and appends one audit entry in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg

from policy import audit_log, grant_store
from policy.domain import audit
from runtime.database import UNAVAILABLE_ERRORS, Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Workspaces one sweep looks at; the next sweep picks up the rest.
_WORKSPACES_PER_SWEEP = 100
# Seconds to wait after a failed sweep (database down) before trying again.
_RETRY_AFTER_ERROR_SECONDS = 2.0


async def expire_locked(
    connection: Connection,
    keys: audit.MacKeys,
    workspace_id: str,
    records: Sequence[grant_store.GrantRecord],
    now: datetime,
) -> int:
    """Expires grants of one workspace whose rows the caller holds locked; each must be
    RESERVED and due. Frees their reservations (customer and visitor counters, in the one
    lock order ``grant_store.free_reservations`` keeps) and audits each once."""
    await grant_store.free_reservations(connection, records)
    entries = []
    for record in records:
        expired = await grant_store.expire_grant(connection, record, now)
        grant = expired.grant
        entries.append(
            audit.Entry(
                occurred_at=now,
                actor_kind="service",
                actor_id="policy",
                kind="grant.expired",
                contact_id=grant.contact_id,
                stripe_customer_id=grant.details.stripe_customer_id,
                action=grant.action.value,
                amount_minor=grant.details.amount.amount_minor if grant.details.amount else 0,
                currency=grant.details.amount.currency if grant.details.amount else "",
                outcome="EXPIRED",
                subject_id=grant.grant_id,
            )
        )
    await audit_log.record(connection, keys, workspace_id, entries)
    return len(entries)


async def expire_one(
    pool: asyncpg.Pool, keys: audit.MacKeys, workspace_id: str, grant_id: str, now: datetime
) -> bool:
    """Expires one grant if it is still RESERVED and due (the lazy path)."""
    async with pool.acquire() as connection, connection.transaction():
        record = await grant_store.get_grant_for_update(connection, workspace_id, grant_id)
        if record is None or not record.grant.due(now):
            return False
        await expire_locked(connection, keys, workspace_id, [record], now)
        return True


async def sweep(pool: asyncpg.Pool, keys: audit.MacKeys, now: datetime, batch_size: int) -> int:
    """One pass over every workspace with due grants; returns how many expired."""
    async with pool.acquire() as connection:
        workspaces = await grant_store.workspaces_with_due_grants(
            connection, now, _WORKSPACES_PER_SWEEP
        )
        total = 0
        for workspace_id in workspaces:
            while True:
                async with connection.transaction():
                    records = await grant_store.claim_due_grants(
                        connection, workspace_id, now, batch_size
                    )
                    if records:
                        total += await expire_locked(connection, keys, workspace_id, records, now)
                if len(records) < batch_size:
                    break
    return total


def expiry_worker(
    pool: asyncpg.Pool,
    keys: audit.MacKeys,
    clock: Clock,
    interval_seconds: float,
    batch_size: int,
) -> Periodic:
    """Runs ``sweep`` every ``interval_seconds`` (at least _RETRY_AFTER_ERROR_SECONDS apart
    after a failed sweep) until stopped."""

    async def step() -> None:
        expired = await sweep(pool, keys, clock(), batch_size)
        if expired:
            logger.info("grants expired", extra={"count": expired})

    return Periodic(
        "policy-grant-expiry",
        step,
        Schedule(
            interval_seconds,
            failure_seconds=max(interval_seconds, _RETRY_AFTER_ERROR_SECONDS),
        ),
        failure_message="expiry sweep failed",
        quiet=UNAVAILABLE_ERRORS,
    )
