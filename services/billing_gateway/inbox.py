"""The webhook inbox worker: claims due events in batches and applies each exactly once.

A batch is claimed with FOR UPDATE SKIP LOCKED in one transaction, so any number of workers
(in this replica and others) share the inbox without taking an event twice. Every event of
the batch is applied on that transaction's connection, and all are marked processed (or
deferred) in one statement before it commits: processed means its local effects are
committed. A worker that dies mid-batch commits nothing; its rows are unlocked by
PostgreSQL and claimed again, and their calls to identity, the notifier and Stripe repeat
nothing (their keys come from the event). An event whose neighbour cannot be reached is
deferred with backoff, alone. A batch that fails outright (a database error, a bug) is taken
apart: its events are claimed one at a time, and one that still fails is deferred.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from billing_gateway import inbox_store
from billing_gateway.event_burst import Burst
from billing_gateway.inbox_store import Finished
from billing_gateway.peers import limit_reopens_in
from runtime import errors
from runtime.database import Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

Json = dict[str, Any]

# Backoff of a deferred event: 1 s, 2 s, 4 s ... at most 5 minutes.
_BACKOFF_FIRST_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 300.0


def backoff_seconds(attempts: int) -> float:
    """How long an event tried ``attempts`` times before waits until its next try."""
    return min(_BACKOFF_MAX_SECONDS, _BACKOFF_FIRST_SECONDS * 2.0 ** min(attempts, 10))


@dataclass(frozen=True)
class _Parsed:
    """A claimed event with its payload parsed once."""

    event: inbox_store.StoredEvent
    data: Json

    @classmethod
    def of(cls, event: inbox_store.StoredEvent) -> _Parsed:
        try:
            data = json.loads(event.payload)
        except (ValueError, RecursionError):
            data = {}
        return cls(event, data if isinstance(data, dict) else {})

    def object_key(self) -> str:
        """The object the event is about, as a lock key ('' when it names none)."""
        obj = (self.data.get("data") or {}).get("object") or {}
        object_id = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(object_id, str) or not object_id:
            return ""
        return f"{self.event.workspace_id}/{object_id}"

    def targets(self) -> list[str]:
        """The Stripe objects a write of ours may have caused this event about."""
        obj = (self.data.get("data") or {}).get("object") or {}
        if not isinstance(obj, dict):
            return []
        return [
            value
            for value in (
                obj.get("id"),
                obj.get("charge"),
                obj.get("subscription"),
                obj.get("invoice"),
            )
            if isinstance(value, str) and value
        ]


class Effects(Protocol):
    """What an event does (``event_effects.EventEffects``)."""

    async def apply(self, burst: Burst, event: inbox_store.StoredEvent, data: Json) -> list[str]:
        """The event's effects; the ones that could not happen; ServiceError: try later."""
        ...


class SharedConnection:
    """The batch's connection, shared by the tasks applying its events: one statement at a
    time (a connection runs one operation at once), all in the batch's transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._turn = asyncio.Lock()

    async def execute(self, query: str, *args: Any) -> str:
        async with self._turn:
            return await self._connection.execute(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._turn:
            return await self._connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._turn:
            return await self._connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._turn:
            return await self._connection.fetchval(query, *args)


class InboxWorker:
    """Claims batches of due events and applies them (``EventEffects``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        effects: Effects,
        clock: Callable[[], datetime],
        batch_size: int,
        concurrency: int = 1,
    ) -> None:
        self._pool = pool
        self._effects = effects
        self._clock = clock
        self._batch_size = batch_size
        # Events about different objects of one batch applied at once.
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        # Claims left to make one event at a time, after a batch failed outright.
        self._singles = 0

    @property
    def effects(self) -> Effects:
        """What each event does."""
        return self._effects

    def wake(self) -> None:
        """An event was stored: idle workers of this replica look at once."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Processes events until ``stop`` is set; when the inbox is empty, waits for an
        event stored by this replica, or ``poll_seconds`` (events stored by others)."""
        loop = Periodic(
            "billing-webhooks",
            self.process_batch,
            # Events left: the next batch at once; none: until woken or the next poll.
            Schedule(poll_seconds, busy_seconds=0),
            failure_message="webhook worker step failed",
            wake=self._wake,
        )
        await loop.run(stop)

    async def drain(self) -> int:
        """Processes every due event (tests and the benchmark); returns how many events were
        processed or deferred."""
        count = 0
        while handled := await self.process_batch():
            count += handled
        return count

    async def process_batch(self) -> int:
        """Claims a batch of due events and applies them; returns how many (0: none due)."""
        limit = 1 if self._singles > 0 else self._batch_size
        self._singles = max(0, self._singles - 1)
        claimed: list[inbox_store.StoredEvent] = []
        on_commit: list[Callable[[], None]] = []
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                parsed = await self._claim(connection, limit)
                claimed = [item.event for item in parsed]
                if not claimed:
                    return 0
                finished = await self._apply_all(connection, parsed, on_commit)
                await inbox_store.finish_events(connection, finished)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            # Nothing of the batch was committed: every event is due again as it was.
            if len(claimed) > 1:
                logger.exception(
                    "webhook batch failed; its events are taken one at a time",
                    extra={"events": len(claimed)},
                )
                self._singles = len(claimed)
                return len(claimed)
            if not claimed:
                raise
            await self._defer_alone(claimed[0])
            return 1
        for count in on_commit:
            count()
        for item in finished:
            if item.delay_seconds is not None:
                logger.warning(
                    "webhook event deferred",
                    extra={
                        "event_id": item.event.event_id,
                        "reason": item.error,
                        "delay_seconds": item.delay_seconds,
                    },
                )
        return len(claimed)

    async def _claim(self, connection: Connection, limit: int) -> list[_Parsed]:
        """Claims due events, keeping those about objects no other batch is working on: the
        others stay unprocessed, taken by a later claim once that batch is done. (Two events
        about one object in two batches would lock its mirror row and its case in either
        order, and could deadlock.)"""
        parsed = [_Parsed.of(event) for event in await inbox_store.claim_events(connection, limit)]
        keys = [key for item in parsed if (key := item.object_key())]
        held = await inbox_store.lock_objects(connection, keys)
        return [item for item in parsed if not item.object_key() or item.object_key() in held]

    async def _apply_all(
        self,
        connection: Connection,
        parsed: list[_Parsed],
        on_commit: list[Callable[[], None]],
    ) -> list[Finished]:
        """Applies the batch: events about one object one after another, in claim order (the
        mirror decides between their versions with the object's row in hand); events about
        different objects up to ``concurrency`` at once, their statements taking turns on the
        one connection."""
        carriers = await inbox_store.trace_contexts(
            connection,
            sorted({(p.event.workspace_id, target) for p in parsed for target in p.targets()}),
        )
        shared = SharedConnection(connection)
        burst = Burst(cast(Connection, shared), self._clock(), on_commit=on_commit)
        groups: dict[str, list[_Parsed]] = {}
        for number, item in enumerate(parsed):
            groups.setdefault(item.object_key() or f"#{number}", []).append(item)
        finished: dict[str, Finished] = {}
        turns = asyncio.Semaphore(self._concurrency)

        async def one_after_another(items: list[_Parsed]) -> None:
            async with turns:
                for item in items:
                    finished[item.event.event_id] = await self._apply_one(burst, item, carriers)

        outcomes = await asyncio.gather(
            *(one_after_another(items) for items in groups.values()), return_exceptions=True
        )
        # Every task has ended before the batch's transaction is rolled back on a failure.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [finished[item.event.event_id] for item in parsed]

    async def _apply_one(
        self,
        burst: Burst,
        item: _Parsed,
        carriers: dict[tuple[str, str], tuple[datetime, dict[str, str]]],
    ) -> Finished:
        event = item.event
        # The newest of our writes on any object the event names.
        found = [
            carriers[(event.workspace_id, target)]
            for target in item.targets()
            if (event.workspace_id, target) in carriers
        ]
        carrier = max(found, key=lambda pair: pair[0])[1] if found else None
        with tracer.start_as_current_span(
            f"billing.webhook {event.event_type}",
            context=_trace_of(carrier),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "askvault.workspace_id": event.workspace_id,
                "askvault.stripe_event_id": event.event_id,
            },
        ):
            try:
                problems = await self._effects.apply(burst, event, item.data)
            except errors.ServiceError as error:
                # A limit that says when it reopens is waited out to then, and the wait is
                # no failed attempt (it does not lengthen the backoff of a later outage).
                reopens_in = limit_reopens_in(error)
                return Finished(
                    event,
                    delay_seconds=(
                        backoff_seconds(event.attempts) if reopens_in is None else reopens_in
                    ),
                    error=f"{error.reason}: {error.message}",
                    counts_attempt=reopens_in is None,
                )
        return Finished(event, outcome="; ".join(problems))

    async def _defer_alone(self, event: inbox_store.StoredEvent) -> None:
        """An event that failed on its own (not a neighbour's outage): tried again later, so
        that it does not hold up the events behind it."""
        delay = backoff_seconds(event.attempts)
        logger.exception(
            "webhook event failed; deferred",
            extra={"event_id": event.event_id, "delay_seconds": delay},
        )
        async with self._pool.acquire() as connection, connection.transaction():
            # Locked again (and skipped when another worker took it meanwhile).
            if await inbox_store.lock_event(connection, event.workspace_id, event.event_id):
                await inbox_store.finish_events(
                    connection, [Finished(event, delay_seconds=delay, error="internal error")]
                )


def _trace_of(carrier: dict[str, str] | None) -> otel_context.Context | None:
    """The trace of our own write that an event reports (a refund, a plan change, a retried
    invoice), so that its effects (the confirmation message) join that trace."""
    return propagate.extract(carrier) if carrier else None
