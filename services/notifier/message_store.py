"""Storage of the messages: queueing (dedup keys, send counts per window), the outbox the
workers claim and settle, and the provider statuses of sent messages (parked until the
send is recorded); the only module that runs their SQL (message_queries.sql)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from notifier import settings_store
from notifier.domain import outbox
from runtime.database import Connection, Queries

queries = Queries("notifier", "message_queries.sql")


@dataclass(frozen=True)
class AttachmentRecord:
    """A file to fetch at send time."""

    filename: str
    content_type: str
    url: str


@dataclass(frozen=True)
class MessageRecord:
    """A stored message."""

    workspace_id: str
    message_id: str
    contact_id: str
    recipient_email: str
    recipient_whatsapp: str
    recipient_name: str
    template: str
    variables: dict[str, str]
    attachments: tuple[AttachmentRecord, ...]
    channel: str
    fallback_from: str
    webhook_url: str
    status: str
    attempts: int
    last_error: str
    next_attempt_at: datetime
    claim_token: uuid.UUID | None
    handoff_done: tuple[str, ...]
    provider_message_id: str
    dedup_key: str
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True)
class ClaimedMessage:
    """A message claimed for delivery, with what its delivery needs to know."""

    message: MessageRecord
    claim_token: uuid.UUID
    sender_name: str
    from_address: str
    reply_to: str
    whatsapp_phone_number_id: str
    # The workspace's helpdesk signing secret, sealed (None: the workspace set none).
    helpdesk_webhook_secret_sealed: bytes | None
    whatsapp_consent: outbox.Consent | None
    email_consent: outbox.Consent | None
    last_inbound_at: datetime | None


@dataclass(frozen=True)
class NewMessage:
    """A message to queue."""

    workspace_id: str
    message_id: str
    contact_id: str
    recipient_email: str
    recipient_whatsapp: str
    recipient_name: str
    template: str
    variables: dict[str, str]
    attachments: tuple[AttachmentRecord, ...]
    channel: str
    webhook_url: str
    dedup_key: str


def _message(row: asyncpg.Record) -> MessageRecord:
    variables = row["variables"]
    attachments = row["attachments"]
    return MessageRecord(
        workspace_id=row["workspace_id"],
        message_id=row["message_id"],
        contact_id=row["contact_id"],
        recipient_email=row["recipient_email"],
        recipient_whatsapp=row["recipient_whatsapp"],
        recipient_name=row["recipient_name"],
        template=row["template"],
        variables=json.loads(variables) if isinstance(variables, str) else dict(variables),
        attachments=tuple(
            AttachmentRecord(a["filename"], a["content_type"], a["url"])
            for a in (json.loads(attachments) if isinstance(attachments, str) else attachments)
        ),
        channel=row["channel"],
        fallback_from=row["fallback_from"],
        webhook_url=row["webhook_url"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        claim_token=row["claim_token"],
        handoff_done=tuple(row["handoff_done"]),
        provider_message_id=row["provider_message_id"],
        dedup_key=row["dedup_key"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        delivered_at=row["delivered_at"],
    )


async def claim_dedup_key(
    connection: Connection, workspace_id: str, dedup_key: str, message_id: str, fingerprint: bytes
) -> tuple[str, bytes] | None:
    """None when this call claimed the key for ``message_id``; else (the message id the key
    already made, that call's fingerprint). Must run in the transaction that queues."""
    inserted = await connection.fetchval(
        queries.insert_dedup_key, workspace_id, dedup_key, message_id, fingerprint
    )
    if inserted:
        return None
    row = await connection.fetchrow(queries.get_dedup_key, workspace_id, dedup_key)
    assert row is not None
    return row["message_id"], bytes(row["fingerprint"])


async def count_send(
    connection: Connection,
    workspace_id: str,
    scope: str,
    limit: int,
    at: datetime | None = None,
) -> bool:
    """Counts one send (at ``at``, None: now) against the scope's sends of the last hour;
    False when ``limit`` of them are counted already. The window's row stays locked until
    the transaction ends, so concurrent sends queue up behind it and can never jointly pass
    the limit."""
    return bool(await connection.fetchval(queries.count_send, workspace_id, scope, limit, at))


async def send_window_reopens_in(
    connection: Connection,
    workspace_id: str,
    scope: str,
    limit: int,
    at: datetime | None = None,
) -> float:
    """Seconds from ``at`` (None: now) until the scope's window takes one more send."""
    seconds = await connection.fetchval(
        queries.send_window_reopens_in, workspace_id, scope, limit, at
    )
    return float(seconds or 0.0)


async def delete_old_counters(connection: Connection) -> None:
    """Drops send windows idle for an hour (and the clock-hour counters of old versions)."""
    await connection.execute(queries.delete_old_counters)


async def insert_message(connection: Connection, new: NewMessage) -> MessageRecord:
    """Queues a message, due now."""
    row = await connection.fetchrow(
        queries.insert_message,
        new.workspace_id,
        new.message_id,
        new.contact_id,
        new.recipient_email,
        new.recipient_whatsapp,
        new.recipient_name,
        new.template,
        json.dumps(new.variables),
        json.dumps([a.__dict__ for a in new.attachments]),
        new.channel,
        new.webhook_url,
        new.dedup_key,
    )
    assert row is not None
    return _message(row)


async def get_message(
    connection: Connection, workspace_id: str, message_id: str
) -> MessageRecord | None:
    """One message of the workspace, or None."""
    row = await connection.fetchrow(queries.get_message, workspace_id, message_id)
    return _message(row) if row else None


async def list_messages(
    connection: Connection,
    workspace_id: str,
    contact_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    status: str = "",
) -> list[MessageRecord]:
    """A contact's messages (the workspace's when ``contact_id`` is ''), newest first,
    after the (created_at, message_id) cursor; only those in ``status`` unless ''."""
    rows = await connection.fetch(
        queries.list_messages,
        workspace_id,
        contact_id,
        after[0] if after else None,
        after[1] if after else "",
        limit,
        status,
    )
    return [_message(row) for row in rows]


async def lock_message(
    connection: Connection, workspace_id: str, message_id: str
) -> MessageRecord | None:
    """One message, locked until the transaction ends; None when there is none."""
    row = await connection.fetchrow(queries.lock_message, workspace_id, message_id)
    return _message(row) if row else None


async def requeue_for_resend(
    connection: Connection, workspace_id: str, message_id: str
) -> MessageRecord | None:
    """Queues a dead or failed message again with its attempts from zero; None when it
    is in another status."""
    row = await connection.fetchrow(queries.requeue_for_resend, workspace_id, message_id)
    return _message(row) if row else None


def _optional_consent(opted_in: bool | None, number: str | None) -> outbox.Consent | None:
    return None if opted_in is None else outbox.Consent(opted_in, number or "")


async def claim_due(
    connection: Connection, limit: int, lease_seconds: float, worker_id: str
) -> list[ClaimedMessage]:
    """Claims up to ``limit`` due messages (committed before delivery starts)."""
    rows = await connection.fetch(queries.claim_due, limit, lease_seconds, worker_id)
    return [
        ClaimedMessage(
            message=_message(row),
            claim_token=row["claim_token"],
            sender_name=row["ws_sender_name"] or "",
            from_address=row["ws_from_address"] or "",
            reply_to=row["ws_reply_to"] or "",
            whatsapp_phone_number_id=row["ws_whatsapp_phone_number_id"] or "",
            helpdesk_webhook_secret_sealed=settings_store.sealed_or_none(
                row["ws_helpdesk_webhook_secret"]
            ),
            whatsapp_consent=_optional_consent(
                row["whatsapp_opted_in"], row["whatsapp_consent_number"]
            ),
            email_consent=_optional_consent(row["email_opted_in"], ""),
            last_inbound_at=row["last_inbound_at"],
        )
        for row in rows
    ]


async def mark_sent(
    connection: Connection, workspace_id: str, message_id: str, provider_message_id: str
) -> bool:
    """Records the provider's acceptance; False if the message was no longer queued."""
    return bool(
        await connection.fetchval(queries.mark_sent, workspace_id, message_id, provider_message_id)
    )


async def reschedule(
    connection: Connection,
    claimed: ClaimedMessage,
    delay_seconds: float,
    error: str,
) -> bool:
    """Queues the message again after a delay; False if the claim was lost meanwhile."""
    message = claimed.message
    return bool(
        await connection.fetchval(
            queries.reschedule,
            message.workspace_id,
            message.message_id,
            claimed.claim_token,
            delay_seconds,
            error,
        )
    )


async def fall_back_to_email(connection: Connection, claimed: ClaimedMessage, error: str) -> bool:
    """Switches the message to email, due at once; False if the claim was lost."""
    message = claimed.message
    return bool(
        await connection.fetchval(
            queries.fall_back_to_email,
            message.workspace_id,
            message.message_id,
            claimed.claim_token,
            error,
        )
    )


async def bury(connection: Connection, claimed: ClaimedMessage, error: str) -> bool:
    """Dead-letters the message, keeping the error; False if the claim was lost."""
    message = claimed.message
    return bool(
        await connection.fetchval(
            queries.bury, message.workspace_id, message.message_id, claimed.claim_token, error
        )
    )


async def outbox_ages(connection: Connection) -> dict[str, float]:
    """Channel -> seconds the oldest message waiting to be sent by it has waited (channels
    with nothing waiting are absent)."""
    rows = await connection.fetch(queries.outbox_ages)
    return {str(row["channel"]): float(row["age_seconds"]) for row in rows}


async def mark_handoff_part_done(
    connection: Connection, claimed: ClaimedMessage, part: str
) -> None:
    """Remembers that one destination of a hand-off was served."""
    message = claimed.message
    await connection.execute(
        queries.mark_handoff_part_done,
        message.workspace_id,
        message.message_id,
        claimed.claim_token,
        part,
    )


async def messages_by_provider_id(
    connection: Connection, provider_message_id: str
) -> list[MessageRecord]:
    """The message(s) a provider id belongs to, locked for the status update."""
    rows = await connection.fetch(queries.messages_by_provider_id, provider_message_id)
    return [_message(row) for row in rows]


@dataclass(frozen=True)
class ParkedStatus:
    """A provider status that waited for its send to be recorded."""

    provider_message_id: str
    status: str
    occurred_at: datetime
    error_code: int
    error_title: str


async def lock_provider_message_id(connection: Connection, provider_message_id: str) -> None:
    """Takes the transaction's lock on a provider message id (statuses vs. the send)."""
    await connection.execute(queries.lock_provider_message_id, provider_message_id)


async def park_status(connection: Connection, parked: ParkedStatus, max_parked: int) -> bool:
    """Keeps a status for a send not recorded yet; False when it was not kept (a repeat, or
    ``max_parked`` statuses wait already)."""
    return bool(
        await connection.fetchval(
            queries.park_whatsapp_status,
            parked.provider_message_id,
            parked.status,
            parked.occurred_at,
            parked.error_code,
            parked.error_title,
            max_parked,
        )
    )


async def take_parked_statuses(
    connection: Connection, provider_message_id: str, ttl_seconds: float
) -> list[ParkedStatus]:
    """The statuses that waited for this provider id (removed), oldest first."""
    rows = await connection.fetch(queries.take_parked_statuses, provider_message_id, ttl_seconds)
    found = [
        ParkedStatus(
            row["provider_message_id"],
            row["status"],
            row["occurred_at"],
            row["error_code"],
            row["error_title"],
        )
        for row in rows
    ]
    return sorted(found, key=lambda parked: parked.occurred_at)


async def delete_expired_parked_statuses(connection: Connection, ttl_seconds: float) -> None:
    """Drops statuses that waited longer than ``ttl_seconds`` for a send."""
    await connection.execute(queries.delete_expired_parked_statuses, ttl_seconds)


async def set_provider_status(
    connection: Connection, message: MessageRecord, status: str, occurred_at: datetime
) -> None:
    """Moves the message to a later provider status."""
    await connection.execute(
        queries.set_provider_status, message.workspace_id, message.message_id, status, occurred_at
    )


async def fail_after_sent(
    connection: Connection, message: MessageRecord, occurred_at: datetime, error: str
) -> None:
    """Records a failure the provider reported after accepting the message."""
    await connection.execute(
        queries.fail_after_sent, message.workspace_id, message.message_id, occurred_at, error
    )


async def requeue_after_sent(
    connection: Connection,
    message: MessageRecord,
    channel: str,
    delay_seconds: float,
    error: str,
    occurred_at: datetime,
) -> None:
    """Queues again a message the provider failed after accepting it."""
    await connection.execute(
        queries.requeue_after_sent,
        message.workspace_id,
        message.message_id,
        channel,
        delay_seconds,
        error,
        occurred_at,
    )
