"""WhatsApp consent kept by the notifier: recorded when a number is proven, withdrawn by STOP
and given again by START from that number, each answered on WhatsApp."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import timestamp_pb2

from askvault.notifier.v1 import notifier_pb2 as npb
from edge import whatsapp_replies
from edge.domain.whatsapp_keywords import Keyword
from edge.peers import Peers
from edge.whatsapp_storage import WhatsAppLink

logger = logging.getLogger(__name__)


async def set_consent(
    peers: Peers,
    workspace_id: str,
    contact_id: str,
    number: str,
    *,
    opted_in: bool,
    source: str,
    occurred_at: timestamp_pb2.Timestamp,
    key: str,
) -> None:
    """Records a contact's WhatsApp consent for ``number`` with the notifier (idempotent)."""
    await peers.notifier.SetChannelConsent(
        npb.SetChannelConsentRequest(
            workspace_id=workspace_id,
            contact_id=contact_id,
            consent=npb.ChannelConsent(
                channel=npb.CHANNEL_WHATSAPP,
                opted_in=opted_in,
                source=source,
                occurred_at=occurred_at,
                whatsapp_number=number,
            ),
            idempotency_key=key,
        ),
        timeout=peers.timeout(),
    )


async def stop_or_start(
    peers: Peers,
    workspace_id: str,
    link: WhatsAppLink,
    number: str,
    keyword: Keyword,
    *,
    message_id: str,
    received_at: timestamp_pb2.Timestamp,
) -> None:
    """STOP withdraws the linked contact's WhatsApp consent at once (every later message goes
    by email or not at all) and confirms it; START gives it again and confirms it. The same
    WhatsApp message id changes nothing twice."""
    opted_in = keyword is Keyword.START
    try:
        await set_consent(
            peers,
            workspace_id,
            link.contact_id,
            number,
            opted_in=opted_in,
            source=f"whatsapp_{keyword.value}",
            occurred_at=received_at,
            key=f"edge:wa-{keyword.value}:{message_id}",
        )
    except grpc.aio.AioRpcError as failure:
        # Not recorded: no confirmation either (a confirmed STOP must hold). WhatsApp
        # delivers the message again when the webhook is not acknowledged.
        logger.warning("whatsapp consent not recorded", extra={"code": failure.code().name})
        raise
    try:
        await peers.notifier.Send(
            npb.SendRequest(
                workspace_id=workspace_id,
                recipient=npb.Recipient(
                    contact_id=link.contact_id, whatsapp_number=number, email=link.email
                ),
                # The opt-out's confirmation is the one message that goes after it.
                template=npb.TEMPLATE_CHAT_REPLY if opted_in else npb.TEMPLATE_WHATSAPP_OPTED_OUT,
                channel=npb.CHANNEL_WHATSAPP,
                variables={
                    "text": whatsapp_replies.WHATSAPP_STARTED
                    if opted_in
                    else whatsapp_replies.WHATSAPP_STOPPED
                },
                dedup_key=f"edge:wa-{keyword.value}-reply:{message_id}",
            ),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as failure:
        logger.warning("whatsapp consent answer not queued", extra={"code": failure.code().name})
