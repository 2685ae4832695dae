"""One delivery attempt of a claimed message: checks consent and the WhatsApp window again
(they may have changed since the message was queued), renders the template and hands it to
the provider. Returns the provider's message id or raises DeliveryFailure."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from notifier import helpdesk_secrets
from notifier.channels import email, helpdesk, whatsapp
from notifier.domain import outbox, templates
from notifier.domain.outbox import DeliveryFailure, FailureKind
from notifier.message_store import ClaimedMessage
from notifier.settings import NotifierSettings
from runtime import logs

PartDone = Callable[[str], Awaitable[None]]
# The contact's WhatsApp consent as stored now (None: never given), read right before the call.
ConsentNow = Callable[[], Awaitable[outbox.Consent | None]]


def delivery_context(claimed: ClaimedMessage, now: datetime) -> outbox.DeliveryContext:
    """What the rules need to know about a claimed message at delivery time."""
    message = claimed.message
    return outbox.DeliveryContext(
        channel=message.channel,
        template_key=message.template,
        email=message.recipient_email,
        whatsapp_consent=claimed.whatsapp_consent,
        email_consent=claimed.email_consent,
        window_closes_at=(
            claimed.last_inbound_at + outbox.WHATSAPP_WINDOW if claimed.last_inbound_at else None
        ),
        now=now,
    )


class Deliverer:
    """Delivers claimed messages through SMTP, the WhatsApp Cloud API or a helpdesk webhook."""

    def __init__(self, settings: NotifierSettings, session: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._session = session
        self._secret_box = helpdesk_secrets.box_of(settings)
        self._smtp = email.SmtpConnections(
            email.SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                starttls=settings.smtp_starttls,
                use_tls=settings.smtp_use_tls,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value(),
                timeout_seconds=settings.smtp_timeout_seconds,
            ),
            size=settings.smtp_idle_connections,
        )
        self._whatsapp = whatsapp.WhatsAppConfig(
            base_url=settings.whatsapp_base_url,
            access_token=settings.whatsapp_access_token.get_secret_value(),
            api_version=settings.whatsapp_api_version,
            template_language=settings.whatsapp_template_language,
            timeout_seconds=settings.whatsapp_timeout_seconds,
        )

    async def close(self) -> None:
        """Closes the kept SMTP connections."""
        await self._smtp.close()

    def message_id_header(self, message_id: str) -> str:
        """The deterministic SMTP Message-ID of a message."""
        return email.message_id_header(message_id, self._settings.message_id_domain)

    async def deliver(
        self, claimed: ClaimedMessage, part_done: PartDone, consent_now: ConsentNow
    ) -> str:
        """One attempt; the provider's message id on success."""
        message = claimed.message
        template = templates.get(message.template)
        failure = outbox.precheck(
            delivery_context(claimed, datetime.now(UTC)),
            free_form=message.channel == outbox.WHATSAPP and not template.whatsapp_name,
        )
        if failure is not None:
            raise failure
        if template.key == "handoff":
            return await self._handoff(claimed, template, part_done)
        if message.channel == outbox.WHATSAPP:
            return await self._whatsapp_message(claimed, template, consent_now)
        return await self._email(claimed, template, message.recipient_email)

    async def _whatsapp_message(
        self, claimed: ClaimedMessage, template: templates.Template, consent_now: ConsentNow
    ) -> str:
        message = claimed.message
        phone_number_id = (
            claimed.whatsapp_phone_number_id or self._settings.whatsapp_phone_number_id
        )
        if not phone_number_id:
            raise DeliveryFailure(FailureKind.FALLBACK, "WhatsApp is not set up for the workspace")
        # The consent read with the claim may be older than an opt-out recorded since (the
        # claim commits before delivery starts): read again, the moment before the call.
        claimed = dataclasses.replace(claimed, whatsapp_consent=await consent_now())
        failure = outbox.precheck(
            delivery_context(claimed, datetime.now(UTC)),
            free_form=not template.whatsapp_name,
        )
        if failure is not None:
            raise failure
        consent = claimed.whatsapp_consent
        to = (consent.whatsapp_number if consent else "") or message.recipient_whatsapp
        content = templates.render_whatsapp(
            template,
            message.variables,
            name=message.recipient_name,
            sender_name=self._sender(claimed),
        )
        return await whatsapp.send(self._session, self._whatsapp, phone_number_id, to, content)

    def _sender(self, claimed: ClaimedMessage) -> str:
        return claimed.sender_name or self._settings.default_sender_name

    async def _email(
        self,
        claimed: ClaimedMessage,
        template: templates.Template,
        to: str,
        reply_to: str = "",
    ) -> str:
        message = claimed.message
        reply_to = reply_to or claimed.reply_to
        content = templates.render_email(
            template,
            message.variables,
            name=message.recipient_name,
            sender_name=self._sender(claimed),
            reply_to=reply_to,
        )
        fetched = await asyncio.gather(
            *(
                email.fetch_attachment(
                    self._session,
                    attachment.url,
                    attachment.filename,
                    attachment.content_type,
                    max_bytes=self._settings.attachment_max_bytes,
                    timeout_seconds=self._settings.http_timeout_seconds,
                )
                for attachment in message.attachments
            )
        )
        header = self.message_id_header(message.message_id)
        from_address = claimed.from_address or self._settings.default_from_address
        mail = email.build(
            message_id_header_value=header,
            from_address=from_address,
            sender_name=self._sender(claimed),
            reply_to=reply_to,
            to=to,
            content=content,
            attachments=fetched,
            extra_headers=(("X-AskVault-Message-Id", message.message_id),),
        )
        await email.send(self._smtp, mail, from_address, [to])
        return header

    async def _handoff(
        self, claimed: ClaimedMessage, template: templates.Template, part_done: PartDone
    ) -> str:
        """Every configured destination, each once: a retry skips the parts already served."""
        message = claimed.message
        provider_id = ""
        if message.webhook_url and outbox.HELPDESK_WEBHOOK not in message.handoff_done:
            # Read at each attempt: a secret rotated meanwhile signs the retry, whose
            # webhook-id (the message id) stays the same.
            secret = helpdesk_secrets.signing_secret(
                self._secret_box,
                self._settings,
                message.workspace_id,
                claimed.helpdesk_webhook_secret_sealed,
                message.webhook_url,
            )
            await helpdesk.post(
                self._session,
                message.webhook_url,
                handoff_payload(claimed, template),
                message.message_id,
                self._settings.http_timeout_seconds,
                secret,
            )
            await part_done(outbox.HELPDESK_WEBHOOK)
            provider_id = message.message_id
        if message.recipient_email and outbox.EMAIL not in message.handoff_done:
            provider_id = await self._email(
                claimed,
                template,
                message.recipient_email,
                reply_to=message.variables.get("customer_email", ""),
            )
            await part_done(outbox.EMAIL)
        return provider_id or self.message_id_header(message.message_id)


def handoff_payload(claimed: ClaimedMessage, template: templates.Template) -> dict[str, Any]:
    """The JSON a helpdesk receives: the escalation and its context, free text redacted."""
    message = claimed.message
    context = {
        key: logs.redact(value) if key in template.free_text else value
        for key, value in message.variables.items()
    }
    return {
        "type": "askvault.handoff",
        "message_id": message.message_id,
        "workspace_id": message.workspace_id,
        "contact_id": message.contact_id,
        "created_at": message.created_at.isoformat(),
        "reason": context.get("reason", ""),
        "summary": context.get("summary", ""),
        "escalation_id": context.get("escalation_id", ""),
        "context": context,
    }
