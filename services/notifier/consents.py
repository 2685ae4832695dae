"""A contact's consents per channel, and the WhatsApp customer-service window its inbound
messages open."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import consent_store, convert
from notifier.domain import outbox
from runtime import convert as proto_time
from runtime import idempotency
from runtime.database import Connection


async def set_consent(
    pool: asyncpg.Pool, request: pb.SetChannelConsentRequest, occurred_at: datetime
) -> pb.SetChannelConsentResponse:
    """Records the consent (a later one wins); runs once per idempotency key."""
    consent = request.consent

    async def record(connection: Connection) -> pb.SetChannelConsentResponse:
        stored = await consent_store.record_consent(
            connection,
            request.workspace_id,
            request.contact_id,
            convert.CHANNEL_TO_STR[consent.channel],
            consent.opted_in,
            consent.source,
            occurred_at,
            consent.whatsapp_number,
        )
        return pb.SetChannelConsentResponse(consent=convert.consent_pb(stored))

    return await idempotency.run_once(
        pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.SetChannelConsentResponse,
        record,
    )


async def get_consents(
    pool: asyncpg.Pool, workspace_id: str, contact_id: str
) -> pb.GetChannelConsentResponse:
    """The contact's consents, one per channel it gave or withdrew one for."""
    async with pool.acquire() as connection:
        records = await consent_store.get_consents(connection, workspace_id, contact_id)
    return pb.GetChannelConsentResponse(consents=[convert.consent_pb(r) for r in records])


async def record_inbound(
    pool: asyncpg.Pool,
    request: pb.RecordInboundWhatsAppRequest,
    received_at: datetime,
    now: datetime,
) -> pb.RecordInboundWhatsAppResponse:
    """Records an inbound WhatsApp message (received no later than ``now``); answers when
    the window it keeps open closes."""
    async with pool.acquire() as connection, connection.transaction():
        latest = await consent_store.record_inbound(
            connection,
            request.workspace_id,
            request.contact_id,
            request.provider_message_id,
            request.whatsapp_number,
            min(received_at, now),
        )
    return pb.RecordInboundWhatsAppResponse(
        window_closes_at=proto_time.timestamp(latest + outbox.WHATSAPP_WINDOW)
    )
