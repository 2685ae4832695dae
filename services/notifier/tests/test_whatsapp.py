"""WhatsApp: opt-in, templates with buttons, status webhooks, each error code's handling,
the 24-hour window, an opt-out after queueing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.tests.conftest import PHONE_NUMBER_ID, WORKSPACE, Notifier
from runtime import testing
from whatsapp_emulator import app as whatsapp_app

NUMBER = "+14155550100"
VARIABLES = {"amount": "$49.00", "update_card_url": "https://billing.example.com/card"}


def _recipient(contact_id: str = "ct_wa") -> pb.Recipient:
    return pb.Recipient(
        contact_id=contact_id, email="wa@example.com", whatsapp_number=NUMBER, name="Wa"
    )


async def test_nothing_goes_on_whatsapp_without_an_opt_in(notifier: Notifier) -> None:
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient()
    )
    assert sent.message.channel == pb.CHANNEL_EMAIL
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(
            template=pb.TEMPLATE_PAYMENT_FAILED,
            variables=VARIABLES,
            recipient=_recipient(),
            channel=pb.CHANNEL_WHATSAPP,
        )
    code, reason, _ = testing.error_details(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_REQUIRED")
    await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
    assert notifier.whatsapp.state.messages == []


async def test_opted_in_payment_failed_is_a_template_with_recovery_buttons(
    notifier: Notifier,
) -> None:
    consent = await notifier.consent("ct_wa", True)
    assert consent.opted_in and consent.source == "widget_checkbox"
    assert consent.HasField("occurred_at")
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient()
    )
    assert sent.message.channel == pb.CHANNEL_WHATSAPP
    # The emulator posts "sent" and "delivered"; the bridge passes them on.
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DELIVERED)
    assert message.provider_message_id.startswith("wamid.")
    assert message.HasField("delivered_at")
    [recorded] = notifier.whatsapp.state.messages
    assert recorded["phone_number_id"] == PHONE_NUMBER_ID
    assert recorded["version"] == notifier.settings.whatsapp_api_version == "v26.0"
    assert recorded["to"] == NUMBER
    template = recorded["template"]
    assert template["name"] == "payment_failed_v1"
    payloads = [
        component["parameters"][0]["payload"]
        for component in template["components"]
        if component["type"] == "button"
    ]
    assert payloads == ["RETRY_PAYMENT", "UPDATE_CARD", "TALK_TO_HUMAN"]
    body = next(c for c in template["components"] if c["type"] == "body")
    assert [p["text"] for p in body["parameters"]] == ["Wa", "$49.00"]
    assert set(notifier.webhook_answers) == {200}

    # read moves it on; a late "sent" never moves it back.
    def status(value: str) -> pb.WhatsAppStatus:
        return pb.WhatsAppStatus(provider_message_id=message.provider_message_id, status=value)

    applied = await notifier.stub.IngestWhatsAppStatus(
        pb.IngestWhatsAppStatusRequest(statuses=[status("read"), status("sent")])
    )
    assert applied.applied == 1
    again = await notifier.stub.IngestWhatsAppStatus(
        pb.IngestWhatsAppStatusRequest(statuses=[status("delivered"), status("read")])
    )
    assert again.applied == 0
    assert (await notifier.message(message.message_id)).status == pb.MESSAGE_STATUS_READ
    assert notifier.sink.store.stats()["received"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"code": 130429},
        {"code": 131056},
        {"http_status": 503},
        {"http_status": 500},
        {"timeout_seconds": 3.0},  # past the notifier's 2 s WhatsApp timeout
    ],
    ids=["throughput-130429", "pair-rate-131056", "http-503", "http-500", "timeout"],
)
async def test_transient_whatsapp_errors_are_retried_on_whatsapp(
    notifier: Notifier, fault: dict[str, float]
) -> None:
    await notifier.consent("ct_wa", True)
    notifier.whatsapp.state.faults.append(whatsapp_app.Fault(**fault))  # type: ignore[arg-type]
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient()
    )
    message = await notifier.wait_status(
        sent.message.message_id, pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED
    )
    assert message.channel == pb.CHANNEL_WHATSAPP
    assert message.attempts == 2
    assert message.fallback_from == pb.CHANNEL_UNSPECIFIED
    assert len(notifier.whatsapp.state.messages) == 1
    assert notifier.sink.store.stats()["received"] == 0


@pytest.mark.parametrize("code", [131026, 131047])
@pytest.mark.parametrize("delivery", ["sync", "webhook"])
async def test_permanent_whatsapp_errors_fall_back_to_email(
    notifier: Notifier, code: int, delivery: str
) -> None:
    await notifier.consent("ct_wa", True)
    notifier.whatsapp.state.faults.append(whatsapp_app.Fault(code=code, delivery=delivery))
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient()
    )
    message = await notifier.wait_for(
        sent.message.message_id,
        lambda m: m.channel == pb.CHANNEL_EMAIL and m.status == pb.MESSAGE_STATUS_SENT,
    )
    assert message.fallback_from == pb.CHANNEL_WHATSAPP
    assert message.provider_message_id.startswith(f"<{message.message_id}@")
    [mail] = notifier.sink.store.select(to="wa@example.com")
    assert "$49.00" in mail.subject


async def test_whatsapp_failure_without_an_email_dies_with_the_error(notifier: Notifier) -> None:
    await notifier.consent("ct_wa", True)
    notifier.whatsapp.state.faults.append(whatsapp_app.Fault(code=131026))
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED,
        variables=VARIABLES,
        recipient=pb.Recipient(contact_id="ct_wa", whatsapp_number=NUMBER),
    )
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DEAD)
    assert "131026" in message.last_error


async def test_chat_replies_are_free_text_only_inside_the_window(notifier: Notifier) -> None:
    await notifier.consent("ct_wa", True)
    outside = await notifier.send(
        template=pb.TEMPLATE_CHAT_REPLY,
        variables={"text": "Your card 4242 4242 4242 4242 is fine"},
        recipient=_recipient(),
    )
    message = await notifier.wait_for(
        outside.message.message_id,
        lambda m: m.channel == pb.CHANNEL_EMAIL and m.status == pb.MESSAGE_STATUS_SENT,
    )
    assert message.fallback_from == pb.CHANNEL_WHATSAPP
    [mail] = notifier.sink.store.select(to="wa@example.com")
    assert "4242" not in mail.text and "[redacted]" in mail.text
    assert notifier.whatsapp.state.messages == []

    received_at = pb.RecordInboundWhatsAppRequest().received_at
    received_at.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    window = await notifier.stub.RecordInboundWhatsApp(
        pb.RecordInboundWhatsAppRequest(
            workspace_id=WORKSPACE,
            contact_id="ct_wa",
            whatsapp_number=NUMBER,
            received_at=received_at,
            provider_message_id="wamid.inbound1",
        )
    )
    closes = window.window_closes_at.ToDatetime(UTC)
    assert timedelta(hours=22) < closes - datetime.now(UTC) < timedelta(hours=24)
    inside = await notifier.send(
        template=pb.TEMPLATE_CHAT_REPLY, variables={"text": "Done!"}, recipient=_recipient()
    )
    message = await notifier.wait_status(
        inside.message.message_id, pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED
    )
    assert message.channel == pb.CHANNEL_WHATSAPP
    [recorded] = notifier.whatsapp.state.messages
    assert recorded["type"] == "text" and recorded["text"] == "Done!"


async def test_an_opt_out_holds_for_messages_already_queued(
    notifier_factory: Callable[..., Awaitable[Notifier]],
) -> None:
    start = notifier_factory
    # No workers: the message stays queued until a second notifier with workers starts.
    idle = await start(worker_count=0)
    await idle.consent("ct_wa", True)
    sent = await idle.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient()
    )
    assert sent.message.channel == pb.CHANNEL_WHATSAPP
    withdrawn = await idle.consent("ct_wa", False, source="whatsapp_reply")
    assert not withdrawn.opted_in
    # An older opt-in arriving late does not undo the opt-out.
    stale = pb.ChannelConsent().occurred_at
    stale.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    kept = await idle.consent("ct_wa", True, occurred_at=stale)
    assert not kept.opted_in

    working = await start(worker_count=1)
    message = await working.wait_for(
        sent.message.message_id,
        lambda m: m.status == pb.MESSAGE_STATUS_SENT and m.channel == pb.CHANNEL_EMAIL,
    )
    assert message.fallback_from == pb.CHANNEL_WHATSAPP
    assert [m.message_id for m in await working.outbox("ct_wa")] == [sent.message.message_id]
    assert working.whatsapp.state.messages == []
    consents = await working.stub.GetChannelConsent(
        pb.GetChannelConsentRequest(workspace_id=WORKSPACE, contact_id="ct_wa")
    )
    assert [(c.channel, c.opted_in) for c in consents.consents] == [(pb.CHANNEL_WHATSAPP, False)]
