"""The notifier's messages: the proto enums' domain values and the proto forms of stored
rows."""

from __future__ import annotations

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import consent_store, message_store
from notifier.domain import escalation_templates, outbox, templates
from runtime import convert

TEMPLATE_TO_KEY = {
    pb.TEMPLATE_PAYMENT_FAILED: "payment_failed",
    pb.TEMPLATE_REFUND_CONFIRMATION: "refund_confirmation",
    pb.TEMPLATE_PLAN_CHANGE_CONFIRMATION: "plan_change_confirmation",
    pb.TEMPLATE_CANCELLATION_SCHEDULED: "cancellation_scheduled",
    pb.TEMPLATE_CANCELLATION_UNDONE: "cancellation_undone",
    pb.TEMPLATE_CANCELLATION_DONE: "cancellation_done",
    pb.TEMPLATE_OFFBOARDING: "offboarding",
    pb.TEMPLATE_INVOICE_BUNDLE: "invoice_bundle",
    pb.TEMPLATE_HANDOFF: "handoff",
    pb.TEMPLATE_CHAT_REPLY: "chat_reply",
    pb.TEMPLATE_WHATSAPP_OPTED_OUT: templates.WHATSAPP_OPTED_OUT,
    pb.TEMPLATE_ESCALATION_APPROVED: escalation_templates.APPROVED,
    pb.TEMPLATE_ESCALATION_DECLINED: escalation_templates.DECLINED,
}
KEY_TO_TEMPLATE = {value: key for key, value in TEMPLATE_TO_KEY.items()}
CHANNEL_TO_STR = {
    pb.CHANNEL_EMAIL: outbox.EMAIL,
    pb.CHANNEL_WHATSAPP: outbox.WHATSAPP,
    pb.CHANNEL_HELPDESK_WEBHOOK: outbox.HELPDESK_WEBHOOK,
}
STR_TO_CHANNEL = {value: key for key, value in CHANNEL_TO_STR.items()}
STATUS_TO_PB = {
    outbox.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    outbox.SENT: pb.MESSAGE_STATUS_SENT,
    outbox.DELIVERED: pb.MESSAGE_STATUS_DELIVERED,
    outbox.READ: pb.MESSAGE_STATUS_READ,
    outbox.FAILED: pb.MESSAGE_STATUS_FAILED,
    outbox.DEAD: pb.MESSAGE_STATUS_DEAD,
}
PB_TO_STATUS = {value: key for key, value in STATUS_TO_PB.items()}


def message_pb(record: message_store.MessageRecord) -> pb.Message:
    """The proto form of a stored message."""
    return pb.Message(
        message_id=record.message_id,
        workspace_id=record.workspace_id,
        contact_id=record.contact_id,
        template=KEY_TO_TEMPLATE.get(record.template, pb.TEMPLATE_UNSPECIFIED),
        channel=STR_TO_CHANNEL.get(record.channel, pb.CHANNEL_UNSPECIFIED),
        status=STATUS_TO_PB.get(record.status, pb.MESSAGE_STATUS_UNSPECIFIED),
        attempts=record.attempts,
        last_error=record.last_error,
        created_at=convert.timestamp(record.created_at),
        sent_at=convert.timestamp(record.sent_at),
        delivered_at=convert.timestamp(record.delivered_at),
        provider_message_id=record.provider_message_id,
        fallback_from=STR_TO_CHANNEL.get(record.fallback_from, pb.CHANNEL_UNSPECIFIED),
        next_attempt_at=convert.timestamp(
            record.next_attempt_at if record.status == outbox.QUEUED else None
        ),
        dedup_key=record.dedup_key,
    )


def consent_pb(record: consent_store.ConsentRecord) -> pb.ChannelConsent:
    """The proto form of a contact's stored consent for one channel."""
    return pb.ChannelConsent(
        channel=STR_TO_CHANNEL.get(record.channel, pb.CHANNEL_UNSPECIFIED),
        opted_in=record.opted_in,
        source=record.source,
        occurred_at=convert.timestamp(record.occurred_at),
        whatsapp_number=record.whatsapp_number,
    )
