"""Confirmations of the gateway's own writes that survive a notifier outage.

A write that succeeded (plan changed, cancellation scheduled or undone) records its
confirmation in the gateway's database as soon as the ledger holds the outcome, then tries to
hand it to the notifier at once. What the notifier does not take (unreachable, rate-limited)
stays recorded and a worker tries again with a growing delay until it does; what it refuses
for good (no address, no consent) is logged and dropped, as before. Each confirmation is
sent with the dedup key of its operation, so a resend after a lost answer is one message.

Crash-safety: the record is written right after the ledger's outcome, outside its
transaction; a crash between the two loses the record only until the caller retries the
write (every write is retried with its idempotency key until answered, and the retry
records the confirmation again). An attempt in progress holds its record for
``LEASE_SECONDS``; a replica that dies mid-send leaves it to the next worker after that.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from billing_gateway.notices import Notices
from billing_gateway.peers import limit_reopens_in
from runtime import errors
from runtime.database import Queries

logger = logging.getLogger(__name__)

queries = Queries("billing_gateway", "confirmations.sql")

# Seconds an attempt holds its record before another worker may try it.
LEASE_SECONDS = 60.0
# Records one worker pass claims at most.
BATCH = 20


@dataclass(frozen=True)
class PendingConfirmation:
    """One confirmation waiting for the notifier."""

    workspace_id: str
    dedup_key: str
    customer_id: str
    template: notifier_pb2.Template.ValueType
    variables: dict[str, str]
    attempts: int = 0


def _pending(row: asyncpg.Record) -> PendingConfirmation:
    return PendingConfirmation(
        workspace_id=row["workspace_id"],
        dedup_key=row["dedup_key"],
        customer_id=row["stripe_customer_id"],
        template=notifier_pb2.Template.ValueType(row["template"]),
        variables=dict(json.loads(row["variables"])),
        attempts=row["attempts"],
    )


class ConfirmationOutbox:
    """Records confirmations and hands them to the notifier until it takes them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        notices: Notices,
        retry_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self._pool = pool
        self._notices = notices
        self._retry = retry_seconds
        self._retry_max = retry_max_seconds

    async def confirm(
        self,
        workspace_id: str,
        customer_id: str,
        template: notifier_pb2.Template.ValueType,
        variables: dict[str, str],
        *,
        operation_id: str,
    ) -> None:
        """Records the confirmation of a write that already succeeded and tries to send it
        now; never a failure of the write it confirms (what cannot go now goes later)."""
        pending = PendingConfirmation(
            workspace_id,
            f"{notifier_pb2.Template.Name(template).lower()}-{operation_id}",
            customer_id,
            template,
            variables,
        )
        try:
            async with self._pool.acquire() as connection:
                recorded = await connection.fetchval(
                    queries.record_confirmation,
                    workspace_id,
                    pending.dedup_key,
                    customer_id,
                    int(template),
                    json.dumps(variables),
                    LEASE_SECONDS,
                )
        except (asyncpg.PostgresError, OSError) as error:
            # Not recorded: one attempt now, as before there was an outbox.
            logger.warning("confirmation not recorded", extra={"error": str(error)})
            recorded = False
        if recorded is None:
            return  # recorded before (a retried write): its own attempt or the worker sends
        await self._attempt(pending, recorded=bool(recorded))

    async def retry_due(self) -> int:
        """One worker pass: tries every due confirmation; how many the notifier took."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(queries.claim_due_confirmations, BATCH, LEASE_SECONDS)
        sent = 0
        for row in rows:
            sent += await self._attempt(_pending(row), recorded=True)
        return sent

    async def pending(self, workspace_id: str) -> int:
        """How many confirmations of the workspace wait for the notifier."""
        async with self._pool.acquire() as connection:
            count: int = await connection.fetchval(
                queries.count_pending_confirmations, workspace_id
            )
        return count

    async def _attempt(self, pending: PendingConfirmation, *, recorded: bool) -> bool:
        try:
            problems = await self._notices.send(
                pending.workspace_id,
                pending.customer_id,
                pending.template,
                pending.variables,
                dedup=pending.dedup_key,
            )
        except errors.ServiceError as error:
            # A limit that says when it reopens is waited out to then, and gives back the
            # attempt its claim counted (the wait does not lengthen a later backoff).
            reopens_in = limit_reopens_in(error)
            delay = (
                min(self._retry * 2 ** min(pending.attempts, 20), self._retry_max)
                if reopens_in is None
                else reopens_in
            )
            logger.warning(
                "confirmation waits for the notifier",
                extra={
                    "dedup_key": pending.dedup_key,
                    "attempts": pending.attempts,
                    "retry_in_seconds": delay if recorded else None,
                    "error": f"{error.reason}: {error}",
                },
            )
            if recorded:
                await self._settle(
                    queries.defer_confirmation,
                    pending,
                    delay,
                    str(error)[:500],
                    reopens_in is not None,
                )
            return False
        if problems:
            logger.warning(
                "confirmation not sent",
                extra={"dedup_key": pending.dedup_key, "problems": "; ".join(problems)},
            )
        if recorded:
            await self._settle(queries.delete_confirmation, pending)
        return not problems

    async def _settle(self, query: str, pending: PendingConfirmation, *args: object) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(query, pending.workspace_id, pending.dedup_key, *args)
