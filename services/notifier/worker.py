"""The outbox workers: claim due messages, deliver them, record what happened.

A claim is one committed statement (``FOR UPDATE SKIP LOCKED``; attempts + 1; the message's
next due time moves one lease ahead), so any number of workers in any number of processes
share the outbox without taking a message twice while its lease runs. A worker that dies
mid-delivery loses nothing: when the lease ends the message is due again and another worker
claims it. The price is at-least-once delivery to the provider: if a worker dies after the
provider accepted a message and before ``mark_sent`` committed, the message goes out again
with the same deterministic Message-ID. ``mark_sent`` runs the moment the provider answers,
to keep that window as small as a single UPDATE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from notifier import consent_store, message_store, outbox_metrics
from notifier.delivery import Deliverer, delivery_context
from notifier.domain import outbox
from notifier.domain.outbox import DeliveryFailure, FailureKind
from notifier.settings import NotifierSettings
from notifier.whatsapp_statuses import StatusIngestion
from runtime import periodic, tasks
from runtime.database import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)

# Seconds between deletions of past send counters and of parked statuses past their time
# (by worker 0 of a process).
HOUSEKEEPING_INTERVAL_SECONDS = 600.0
# Seconds to wait before claiming again after the database failed.
DATABASE_RETRY_SECONDS = 1.0
# Seconds a claim waits for a pooled connection: a stop must not wait behind a full pool.
ACQUIRE_TIMEOUT_SECONDS = 10.0


def _done_event(future: asyncio.Future[Any]) -> asyncio.Event:
    """An event set when ``future`` ends (so it can be awaited beside other events)."""
    event = asyncio.Event()
    future.add_done_callback(lambda _: event.set())
    return event


class Waker:
    """Wakes the workers of this process when Send queued something, so a new message does
    not wait for the next poll (workers in other processes find it by polling)."""

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def register(self) -> asyncio.Event:
        """An event set whenever ``notify`` is called."""
        event = asyncio.Event()
        self._events.append(event)
        return event

    def notify(self) -> None:
        """Wakes every registered worker."""
        for event in self._events:
            event.set()


class OutboxWorker:
    """One worker loop with at most ``concurrency`` deliveries in flight."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: NotifierSettings,
        deliverer: Deliverer,
        worker_id: str,
        waker: Waker | None = None,
        rng: random.Random | None = None,
        on_outcome: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._deliverer = deliverer
        self.worker_id = worker_id
        waker = waker or Waker()
        self._wake = waker.register()
        self._statuses = StatusIngestion(pool, settings, waker.notify)
        self._rng = rng or random.Random()
        self._slots = asyncio.BoundedSemaphore(settings.worker_concurrency)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._policy = outbox.RetryPolicy(
            settings.max_attempts,
            settings.retry_backoff_base_seconds,
            settings.retry_backoff_cap_seconds,
        )
        self._on_outcome = on_outcome
        self._last_housekeeping = time.monotonic()
        self._killed = False

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, *, housekeeping: bool = False) -> None:
        """Claims and delivers until ``stopping`` is set, then lets in-flight deliveries end.

        On runtime.periodic: a claim that filled every free slot claims again at once (more
        may be due); one that left slots free waits for the poll interval, a wake-up (Send
        queued something in this process) or the stop; a failed claim is retried after
        DATABASE_RETRY_SECONDS."""

        async def step() -> bool:
            return await self._claim_and_deliver(stopping, housekeeping=housekeeping)

        loop = periodic.Periodic(
            self.worker_id,
            step,
            periodic.Schedule(
                interval_seconds=self._settings.poll_interval_seconds,
                busy_seconds=0,
                failure_seconds=DATABASE_RETRY_SECONDS,
            ),
            failure_message="outbox claim failed",
            # The loop outlives any database trouble; the claim is retried.
            quiet=(Exception,),
            wake=self._wake,
        )
        logger.info("outbox worker started", extra={"worker": self.worker_id})
        try:
            await loop.run(stopping)
        finally:
            # In-flight deliveries may finish (each is bounded by its own deadline); a killed
            # worker's were cancelled already. Either way none is left running.
            await tasks.finish_all(
                set(self._deliveries),
                0 if self._killed else self._settings.delivery_deadline_seconds,
            )
            logger.info("outbox worker stopped", extra={"worker": self.worker_id})

    async def _claim_and_deliver(self, stopping: asyncio.Event, *, housekeeping: bool) -> bool:
        """One step: takes the free delivery slots, claims as many due messages and starts
        their deliveries; True when every slot taken was filled (more may be due)."""
        # Waiting for a free slot must not outlast a stop: with every slot busy on a slow
        # delivery, a plain acquire() would keep the worker from ever stopping.
        if not await self._acquire_slot_or_stop(stopping):
            return False
        slots = 1
        while slots < self._settings.worker_concurrency and not self._slots.locked():
            await self._slots.acquire()
            slots += 1
        claimed: list[message_store.ClaimedMessage] = []
        try:
            claimed = await self._claim(slots)
        finally:
            for _ in range(slots - len(claimed)):
                self._slots.release()
        for item in claimed:
            task = asyncio.create_task(
                self._deliver(item), name=f"deliver-{item.message.message_id}"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._delivery_done)
        if housekeeping:
            await self._housekeeping()
        return len(claimed) == slots

    async def _acquire_slot_or_stop(self, stopping: asyncio.Event) -> bool:
        """Takes one delivery slot, or returns False (holding none) once stopping is set."""
        if stopping.is_set():
            return False
        acquiring = asyncio.ensure_future(self._slots.acquire())
        try:
            await tasks.wait_any((stopping, _done_event(acquiring)), None)
        finally:
            if stopping.is_set() or not acquiring.done():
                acquiring.cancel()
            await asyncio.wait({acquiring})
        took = not acquiring.cancelled() and acquiring.exception() is None
        if took and stopping.is_set():
            self._slots.release()
            return False
        return took

    @property
    def in_flight(self) -> int:
        """Deliveries running now."""
        return len(self._deliveries)

    def kill(self) -> None:
        """Cancels every delivery at once without recording anything (tests simulate a
        crash with it; the leases of the messages it held run out). Cancel ``run`` too."""
        self._killed = True
        for task in list(self._deliveries):
            task.cancel()

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        self._slots.release()

    async def _claim(self, limit: int) -> list[message_store.ClaimedMessage]:
        async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as connection:
            return await message_store.claim_due(
                connection, limit, self._settings.lease_seconds, self.worker_id
            )

    async def _housekeeping(self) -> None:
        if time.monotonic() - self._last_housekeeping < HOUSEKEEPING_INTERVAL_SECONDS:
            return
        self._last_housekeeping = time.monotonic()
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            async with self._pool.acquire() as connection:
                await message_store.delete_old_counters(connection)
                await self._statuses.delete_expired(connection)

    # -- one delivery ------------------------------------------------------------------------

    async def _deliver(self, claimed: message_store.ClaimedMessage) -> None:
        message = claimed.message

        async def part_done(part: str) -> None:
            async with self._pool.acquire() as connection:
                await message_store.mark_handoff_part_done(connection, claimed, part)

        async def consent_now() -> outbox.Consent | None:
            async with self._pool.acquire() as connection:
                return await consent_store.whatsapp_consent(
                    connection, message.workspace_id, message.contact_id
                )

        try:
            async with asyncio.timeout(self._settings.delivery_deadline_seconds):
                provider_message_id = await self._deliverer.deliver(claimed, part_done, consent_now)
        except DeliveryFailure as failure:
            await self._record_failure(claimed, failure)
            return
        except TimeoutError:
            await self._record_failure(
                claimed, DeliveryFailure(FailureKind.TRANSIENT, "delivery took too long")
            )
            return
        except UNAVAILABLE_ERRORS as error:
            # The database failed mid-delivery (a hand-off part); the lease brings it back.
            logger.warning(
                "delivery interrupted",
                extra={"message_id": message.message_id, "error": type(error).__name__},
            )
            return
        except Exception as error:
            logger.exception("delivery crashed", extra={"message_id": message.message_id})
            await self._record_failure(
                claimed,
                DeliveryFailure(FailureKind.TRANSIENT, f"internal error: {type(error).__name__}"),
            )
            return
        # Recorded at once: until this commits, a crash would send the message again.
        try:
            requeued = await self._record_sent(claimed, provider_message_id)
        except UNAVAILABLE_ERRORS as error:
            logger.error(
                "sent but not recorded; it will be sent again when its lease ends",
                extra={"message_id": message.message_id, "error": type(error).__name__},
            )
            return
        logger.info(
            "message sent",
            extra={
                "message_id": message.message_id,
                "channel": message.channel,
                "attempt": message.attempts,
            },
        )
        if requeued:
            self._wake.set()
        await self._report(message.message_id, outbox.SENT)

    async def _record_sent(
        self, claimed: message_store.ClaimedMessage, provider_message_id: str
    ) -> bool:
        """Records the provider's acceptance (one UPDATE); for WhatsApp, under the provider
        id's lock, with the statuses that arrived before it. True when one of those queued
        the message again."""
        message = claimed.message
        async with self._pool.acquire() as connection:
            if message.channel != outbox.WHATSAPP:
                await message_store.mark_sent(
                    connection, message.workspace_id, message.message_id, provider_message_id
                )
                return False
            async with connection.transaction():
                await message_store.lock_provider_message_id(connection, provider_message_id)
                if not await message_store.mark_sent(
                    connection, message.workspace_id, message.message_id, provider_message_id
                ):
                    return False
                return await self._statuses.apply_parked(connection, provider_message_id)

    async def _record_failure(
        self, claimed: message_store.ClaimedMessage, failure: DeliveryFailure
    ) -> None:
        message = claimed.message
        context = delivery_context(claimed, datetime.now(UTC))
        decision = outbox.after_failure(
            failure,
            channel=message.channel,
            attempts=message.attempts,
            can_email=outbox.can_fall_back_to_email(context),
            policy=self._policy,
            rng=self._rng,
        )
        try:
            async with self._pool.acquire() as connection:
                if isinstance(decision, outbox.Retry):
                    await message_store.reschedule(
                        connection, claimed, decision.delay_seconds, decision.error
                    )
                    outcome = "retry"
                elif isinstance(decision, outbox.FallBackToEmail):
                    await message_store.fall_back_to_email(connection, claimed, decision.error)
                    outcome = "fallback"
                else:
                    if await message_store.bury(connection, claimed, decision.error):
                        outbox_metrics.count_dead_letter(message.channel)
                    outcome = outbox.DEAD
        except UNAVAILABLE_ERRORS as error:
            logger.warning(
                "outcome not recorded; the lease brings the message back",
                extra={"message_id": message.message_id, "error": type(error).__name__},
            )
            return
        logger.info(
            "delivery failed",
            extra={
                "message_id": message.message_id,
                "channel": message.channel,
                "attempt": message.attempts,
                "outcome": outcome,
                "error": failure.error,
            },
        )
        if outcome == "fallback":
            self._wake.set()
        await self._report(message.message_id, outcome)

    async def _report(self, message_id: str, outcome: str) -> None:
        if self._on_outcome is not None:
            await self._on_outcome(message_id, outcome)
