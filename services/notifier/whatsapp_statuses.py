"""IngestWhatsAppStatus: the provider's reports on messages it accepted (sent, delivered,
read, failed), applied in order; a failure after acceptance is retried, falls back to email
(where the contact has not opted out of it) or gives the message up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import consent_store, message_store
from notifier.domain import outbox
from notifier.settings import NotifierSettings
from runtime.database import Connection

# The statuses the provider reports (WhatsApp's webhook "statuses").
WHATSAPP_STATUSES = frozenset({outbox.SENT, outbox.DELIVERED, outbox.READ, outbox.FAILED})


class StatusIngestion:
    """Applies status reports; ``on_queued`` wakes this replica's workers after a requeue.

    A report whose send is not recorded yet (the provider's webhook beat the worker's
    mark_sent) is parked and applied by ``apply_parked`` when the send is recorded; both
    take the provider id's lock first, so one of the two always sees the other."""

    def __init__(
        self, pool: asyncpg.Pool, settings: NotifierSettings, on_queued: Callable[[], None]
    ) -> None:
        self._pool = pool
        self._on_queued = on_queued
        self._max_parked = settings.parked_statuses_max
        self._parked_ttl_seconds = settings.parked_status_ttl_seconds
        self._policy = outbox.RetryPolicy(
            settings.max_attempts,
            settings.retry_backoff_base_seconds,
            settings.retry_backoff_cap_seconds,
        )

    async def ingest(
        self, request: pb.IngestWhatsAppStatusRequest
    ) -> pb.IngestWhatsAppStatusResponse:
        """Applies the batch in one transaction; answers how many reports changed a message."""
        applied = 0
        requeued = False
        now = datetime.now(UTC)
        # Locked in one order, so that two webhook batches cannot deadlock each other.
        ordered = sorted(
            request.statuses,
            key=lambda s: (s.provider_message_id, s.occurred_at.seconds, s.occurred_at.nanos),
        )
        async with self._pool.acquire() as connection, connection.transaction():
            for status in ordered:
                report = message_store.ParkedStatus(
                    provider_message_id=status.provider_message_id,
                    status=status.status,
                    occurred_at=(
                        status.occurred_at.ToDatetime(UTC)
                        if status.HasField("occurred_at")
                        else now
                    ),
                    error_code=status.error_code,
                    error_title=status.error_title,
                )
                await message_store.lock_provider_message_id(connection, report.provider_message_id)
                messages = await message_store.messages_by_provider_id(
                    connection, report.provider_message_id
                )
                if not messages:
                    if report.provider_message_id and report.status in WHATSAPP_STATUSES:
                        await message_store.park_status(connection, report, self._max_parked)
                    continue
                for message in messages:
                    changed, again = await self._apply(connection, message, report)
                    applied += changed
                    requeued |= again
        if requeued:
            self._on_queued()
        return pb.IngestWhatsAppStatusResponse(applied=applied)

    async def apply_parked(self, connection: Connection, provider_message_id: str) -> bool:
        """Applies the statuses that waited for this send, in the transaction that recorded
        it (which holds the provider id's lock); True when the message is queued again
        (the caller wakes the workers once it committed)."""
        requeued = False
        for report in await message_store.take_parked_statuses(
            connection, provider_message_id, self._parked_ttl_seconds
        ):
            for message in await message_store.messages_by_provider_id(
                connection, provider_message_id
            ):
                requeued |= (await self._apply(connection, message, report))[1]
        return requeued

    async def delete_expired(self, connection: Connection) -> None:
        """Drops parked statuses whose send never came."""
        await message_store.delete_expired_parked_statuses(connection, self._parked_ttl_seconds)

    async def _apply(
        self,
        connection: Connection,
        message: message_store.MessageRecord,
        report: message_store.ParkedStatus,
    ) -> tuple[bool, bool]:
        """(whether the report changed the message, whether it queued it again)."""
        change = outbox.apply_whatsapp_status(
            channel=message.channel,
            current=message.status,
            reported=report.status,
            error_code=report.error_code,
            error_title=report.error_title,
        )
        if change is None:
            return False, False
        if isinstance(change, outbox.StatusChange):
            await message_store.set_provider_status(
                connection, message, change.status, report.occurred_at
            )
            return True, False
        return True, await self._after_failure(
            connection, message, change.failure, report.occurred_at
        )

    async def _after_failure(
        self,
        connection: Connection,
        message: message_store.MessageRecord,
        failure: outbox.DeliveryFailure,
        occurred_at: datetime,
    ) -> bool:
        """Retries, falls back or gives up a message the provider failed after accepting;
        True when it is queued again."""
        email_consent = next(
            (
                c
                for c in await consent_store.get_consents(
                    connection, message.workspace_id, message.contact_id
                )
                if c.channel == outbox.EMAIL
            ),
            None,
        )
        decision = outbox.after_failure(
            failure,
            channel=message.channel,
            attempts=message.attempts,
            can_email=bool(message.recipient_email)
            and (email_consent is None or email_consent.opted_in),
            policy=self._policy,
        )
        if isinstance(decision, outbox.FallBackToEmail):
            await message_store.requeue_after_sent(
                connection, message, outbox.EMAIL, 0.0, decision.error, occurred_at
            )
            return True
        if isinstance(decision, outbox.Retry):
            await message_store.requeue_after_sent(
                connection,
                message,
                outbox.WHATSAPP,
                decision.delay_seconds,
                decision.error,
                occurred_at,
            )
            return True
        await message_store.fail_after_sent(connection, message, occurred_at, decision.error)
        return False
