"""Confirmations of the gateway's own writes that survive a crash and a notifier outage.

A write that will owe the customer a confirmation (plan changed, cancellation scheduled)
carries it from the start: a draft recorded with its ledger row, before Stripe is called. The
transaction that records the outcome it confirms (succeeded, scheduled) takes the draft off the
row and records the confirmation here, whichever path records that outcome: the write itself,
reconciliation after the process died, a Stripe event. So the confirmation exists exactly when
the outcome does (a transactional outbox) and is queued once, however often the outcome is
recorded again. An undone cancellation records its confirmation in the undo's transaction.

The write then tries to hand it to the notifier at once; what the notifier does not take
(unreachable, rate-limited) stays recorded and a worker tries again with a growing delay until
it does; what it refuses for good (no address, no consent) is logged and dropped. Each
confirmation is sent with the dedup key of its operation, so a resend after a lost answer is
one message. An attempt in progress holds its record for ``LEASE_SECONDS``; a replica that
dies mid-send (or before its first attempt) leaves it to the next worker after that.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from billing_gateway import operation_store
from billing_gateway.notices import Notices, display_date
from billing_gateway.peers import limit_reopens_in
from runtime import errors
from runtime.database import Connection, Queries

logger = logging.getLogger(__name__)

queries = Queries("billing_gateway", "confirmations.sql")

# Seconds an attempt holds its record before another worker may try it.
LEASE_SECONDS = 60.0
# Records one worker pass claims at most.
BATCH = 20


@dataclass(frozen=True)
class Draft:
    """The confirmation an operation owes once it reaches ``due_state``."""

    template: notifier_pb2.Template.ValueType
    variables: dict[str, str]
    due_state: str = operation_store.SUCCEEDED
    # The variable that names the day the outcome takes effect, known only then: the run
    # time of a scheduled operation, else the time its success was recorded.
    effective_date_variable: str = ""

    def stored(self) -> dict[str, Any]:
        """As the ledger row holds it."""
        return {**asdict(self), "template": int(self.template)}


def dedup_key(template: notifier_pb2.Template.ValueType, operation_id: str) -> str:
    """The key of an operation's confirmation: one per template and operation."""
    return f"{notifier_pb2.Template.Name(template).lower()}-{operation_id}"


async def record_due(connection: Connection, workspace_id: str, operation_id: str) -> bool:
    """In the transaction that recorded the operation's new state: queues its confirmation if
    that state is the one it confirms and nobody queued it yet; whether it did."""
    row = await connection.fetchrow(queries.take_confirmation_draft, workspace_id, operation_id)
    if row is None:
        return False
    stored = row["confirmation"]
    draft = json.loads(stored) if isinstance(stored, str) else dict(stored)
    variables = dict(draft["variables"])
    if draft.get("effective_date_variable"):
        effective = row["run_at"] if draft["due_state"] == operation_store.SCHEDULED else None
        variables[draft["effective_date_variable"]] = display_date(effective or row["updated_at"])
    template = notifier_pb2.Template.ValueType(draft["template"])
    await record(
        connection,
        workspace_id,
        row["stripe_customer_id"],
        template,
        variables,
        operation_id=operation_id,
    )
    return True


async def record(
    connection: Connection,
    workspace_id: str,
    customer_id: str,
    template: notifier_pb2.Template.ValueType,
    variables: dict[str, str],
    *,
    operation_id: str,
) -> None:
    """Queues a confirmation, due at once, in the caller's transaction (the one recording
    the outcome it confirms); a second one for the operation and template is ignored."""
    await connection.execute(
        queries.record_confirmation,
        workspace_id,
        dedup_key(template, operation_id),
        customer_id,
        int(template),
        json.dumps(variables),
        0.0,
    )


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

    async def send_now(
        self, workspace_id: str, template: notifier_pb2.Template.ValueType, operation_id: str
    ) -> None:
        """Tries to send the operation's recorded confirmation right after its write (unless
        it was sent, or a worker holds it, or it waits out a backoff); never a failure of the
        write it confirms (what cannot go now goes later)."""
        try:
            async with self._pool.acquire() as connection:
                row = await connection.fetchrow(
                    queries.claim_confirmation,
                    workspace_id,
                    dedup_key(template, operation_id),
                    LEASE_SECONDS,
                )
        except (asyncpg.PostgresError, OSError) as error:
            logger.warning("confirmation left to the worker", extra={"error": str(error)})
            return
        if row is not None:
            await self._attempt(_pending(row))

    async def retry_due(self) -> int:
        """One worker pass: tries every due confirmation; how many the notifier took."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(queries.claim_due_confirmations, BATCH, LEASE_SECONDS)
        sent = 0
        for row in rows:
            sent += await self._attempt(_pending(row))
        return sent

    async def pending(self, workspace_id: str) -> int:
        """How many confirmations of the workspace wait for the notifier."""
        async with self._pool.acquire() as connection:
            count: int = await connection.fetchval(
                queries.count_pending_confirmations, workspace_id
            )
        return count

    async def _attempt(self, pending: PendingConfirmation) -> bool:
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
                    "retry_in_seconds": delay,
                    "error": f"{error.reason}: {error}",
                },
            )
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
        await self._settle(queries.delete_confirmation, pending)
        return not problems

    async def _settle(self, query: str, pending: PendingConfirmation, *args: object) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(query, pending.workspace_id, pending.dedup_key, *args)
