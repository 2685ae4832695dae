"""IngestWhatsAppStatus: the provider's reports on messages it accepted (sent, delivered,
read, failed), applied in order; a failure after acceptance is retried, falls back to email
(where the contact has not opted out of it) or gives the message up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import storage
from notifier.domain import outbox
from notifier.settings import NotifierSettings
from runtime.database import Connection

# The statuses the provider reports (WhatsApp's webhook "statuses").
WHATSAPP_STATUSES = frozenset({outbox.SENT, outbox.DELIVERED, outbox.READ, outbox.FAILED})


class StatusIngestion:
    """Applies status reports; ``on_queued`` wakes this replica's workers after a requeue."""

    def __init__(
        self, pool: asyncpg.Pool, settings: NotifierSettings, on_queued: Callable[[], None]
    ) -> None:
        self._pool = pool
        self._on_queued = on_queued
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
                occurred_at = (
                    status.occurred_at.ToDatetime(UTC) if status.HasField("occurred_at") else now
                )
                for message in await storage.messages_by_provider_id(
                    connection, status.provider_message_id
                ):
                    change = outbox.apply_whatsapp_status(
                        channel=message.channel,
                        current=message.status,
                        reported=status.status,
                        error_code=status.error_code,
                        error_title=status.error_title,
                    )
                    if change is None:
                        continue
                    applied += 1
                    if isinstance(change, outbox.StatusChange):
                        await storage.set_provider_status(
                            connection, message, change.status, occurred_at
                        )
                        continue
                    requeued |= await self._after_failure(
                        connection, message, change.failure, occurred_at
                    )
        if requeued:
            self._on_queued()
        return pb.IngestWhatsAppStatusResponse(applied=applied)

    async def _after_failure(
        self,
        connection: Connection,
        message: storage.MessageRecord,
        failure: outbox.DeliveryFailure,
        occurred_at: datetime,
    ) -> bool:
        """Retries, falls back or gives up a message the provider failed after accepting;
        True when it is queued again."""
        email_consent = next(
            (
                c
                for c in await storage.get_consents(
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
            await storage.requeue_after_sent(
                connection, message, outbox.EMAIL, 0.0, decision.error, occurred_at
            )
            return True
        if isinstance(decision, outbox.Retry):
            await storage.requeue_after_sent(
                connection,
                message,
                outbox.WHATSAPP,
                decision.delay_seconds,
                decision.error,
                occurred_at,
            )
            return True
        await storage.fail_after_sent(connection, message, occurred_at, decision.error)
        return False
