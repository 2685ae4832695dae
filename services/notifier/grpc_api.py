"""Notifier's gRPC layer: checks admin callers, validates and maps messages; the rules live
in ``domain``, the use cases in their modules: Send in ``sending``, reads in
``message_reads``, consents and the WhatsApp window in ``consents``, the provider's reports
in ``whatsapp_statuses``, the workspace's settings in ``workspace_settings`` and a dead
message's resend in ``resending``; the delivery in ``worker``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc

from askvault.notifier.v1 import notifier_pb2 as pb
from askvault.notifier.v1 import notifier_pb2_grpc
from notifier import (
    consents,
    convert,
    helpdesk_secrets,
    message_reads,
    resending,
    workspace_settings,
)
from notifier.domain import templates
from notifier.sending import Sending
from notifier.settings import NotifierSettings
from notifier.whatsapp_statuses import WHATSAPP_STATUSES, StatusIngestion
from runtime import auth, errors, service_auth

_EMAIL = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_ATTACHMENTS = 20
# A consent or inbound message dated further ahead than this is refused: it would shadow
# every real one until then.
CLOCK_SKEW = timedelta(minutes=5)


def _check_email(check: errors.Validator, value: str, path: str) -> None:
    if value:
        check.require(len(value) <= 320 and bool(_EMAIL.match(value)), path, "not an email address")


def _check_url(check: errors.Validator, value: str, path: str) -> None:
    if value:
        check.require(
            len(value) <= 2048 and value.startswith(("https://", "http://")) and " " not in value,
            path,
            "must be an http(s) URL",
        )


def _check_number(check: errors.Validator, value: str, path: str) -> None:
    if value:
        check.require(bool(_E164.match(value)), path, "must be an E.164 number (+14155550123)")


def _check_single_line(check: errors.Validator, value: str, path: str, max_length: int) -> None:
    check.require(len(value) <= max_length, path, f"at most {max_length} characters")
    check.require("\n" not in value and "\r" not in value, path, "must be one line")


def _validate_send(request: pb.SendRequest) -> templates.Template:
    check = errors.Validator()
    check.non_empty(request.workspace_id, "workspace_id")
    check.non_empty(request.dedup_key, "dedup_key", max_length=200)
    key = convert.TEMPLATE_TO_KEY.get(request.template)
    check.require(key is not None, "template", "a template is required")
    check.require(
        request.channel == pb.CHANNEL_UNSPECIFIED or request.channel in convert.CHANNEL_TO_STR,
        "channel",
        "unknown channel",
    )
    recipient = request.recipient
    if key != "handoff":
        check.non_empty(recipient.contact_id, "recipient.contact_id")
        check.require(
            request.channel != pb.CHANNEL_HELPDESK_WEBHOOK,
            "channel",
            "the helpdesk webhook takes hand-offs only",
        )
    check.require(len(recipient.contact_id) <= 256, "recipient.contact_id", "too long")
    _check_email(check, recipient.email, "recipient.email")
    _check_number(check, recipient.whatsapp_number, "recipient.whatsapp_number")
    _check_single_line(check, recipient.name, "recipient.name", 200)
    check.require(
        len(request.attachments) <= MAX_ATTACHMENTS, "attachments", f"at most {MAX_ATTACHMENTS}"
    )
    for index, attachment in enumerate(request.attachments):
        path = f"attachments[{index}]"
        check.non_empty(attachment.filename, f"{path}.filename", max_length=200)
        _check_single_line(check, attachment.filename, f"{path}.filename", 200)
        check.require(bool(attachment.url), f"{path}.url", "must not be empty")
        _check_url(check, attachment.url, f"{path}.url")
        check.require(
            not attachment.content_type or "/" in attachment.content_type,
            f"{path}.content_type",
            "must be a MIME type",
        )
    check.check()
    assert key is not None
    template = templates.get(key)
    templates.check_variables(template, dict(request.variables))
    return template


class NotifierServicer(notifier_pb2_grpc.NotifierServiceServicer):
    """Implements askvault.notifier.v1.NotifierService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: NotifierSettings,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._secret_box = helpdesk_secrets.box_of(settings)
        self._on_queued = on_queued
        self._sending = Sending(pool, settings, on_queued)
        self._statuses = StatusIngestion(pool, settings, on_queued)

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    # -- sending ---------------------------------------------------------------------------

    async def Send(
        self, request: pb.SendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendResponse:
        template = _validate_send(request)
        return await self._sending.send(request, template)

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMessageResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.message_id, "message_id")
        check.check()
        message = await message_reads.get_message(
            self._pool, request.workspace_id, request.message_id
        )
        return pb.GetMessageResponse(message=message)

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListMessagesResponse:
        if service_auth.called_by_admin():
            # A call without a service's credential is an admin's or nobody's: the caller is
            # proven before anything about the request is answered.
            await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(
            0 <= request.page_size <= message_reads.MAX_PAGE_SIZE,
            "page_size",
            f"0 to {message_reads.MAX_PAGE_SIZE}",
        )
        check.require(
            request.status == pb.MESSAGE_STATUS_UNSPECIFIED
            or request.status in convert.PB_TO_STATUS,
            "status",
            "unknown status",
        )
        check.check()
        if request.contact_id == "" and not service_auth.called_by_admin():
            # The whole workspace's messages are an admin's to read.
            await self._admin(context, request.workspace_id)
        return await message_reads.list_messages(self._pool, request)

    # -- consent and the WhatsApp window -----------------------------------------------------

    async def SetChannelConsent(
        self, request: pb.SetChannelConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetChannelConsentResponse:
        consent = request.consent
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        check.require(
            consent.channel in (pb.CHANNEL_EMAIL, pb.CHANNEL_WHATSAPP),
            "consent.channel",
            "email or WhatsApp",
        )
        check.non_empty(consent.source, "consent.source", max_length=100)
        _check_number(check, consent.whatsapp_number, "consent.whatsapp_number")
        if consent.channel == pb.CHANNEL_WHATSAPP and consent.opted_in:
            check.require(
                bool(consent.whatsapp_number),
                "consent.whatsapp_number",
                "required for a WhatsApp opt-in",
            )
        now = datetime.now(UTC)
        occurred_at = (
            consent.occurred_at.ToDatetime(UTC) if consent.HasField("occurred_at") else now
        )
        check.require(occurred_at <= now + CLOCK_SKEW, "consent.occurred_at", "in the future")
        check.check()
        return await consents.set_consent(self._pool, request, occurred_at)

    async def GetChannelConsent(
        self, request: pb.GetChannelConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChannelConsentResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        check.check()
        return await consents.get_consents(self._pool, request.workspace_id, request.contact_id)

    async def RecordInboundWhatsApp(
        self, request: pb.RecordInboundWhatsAppRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecordInboundWhatsAppResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        check.non_empty(request.provider_message_id, "provider_message_id")
        _check_number(check, request.whatsapp_number, "whatsapp_number")
        now = datetime.now(UTC)
        received_at = (
            request.received_at.ToDatetime(UTC) if request.HasField("received_at") else now
        )
        check.require(received_at <= now + CLOCK_SKEW, "received_at", "in the future")
        check.check()
        return await consents.record_inbound(self._pool, request, received_at, now)

    async def IngestWhatsAppStatus(
        self, request: pb.IngestWhatsAppStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestWhatsAppStatusResponse:
        check = errors.Validator()
        check.require(len(request.statuses) <= 1000, "statuses", "at most 1000")
        for index, status in enumerate(request.statuses):
            check.non_empty(status.provider_message_id, f"statuses[{index}].provider_message_id")
            check.require(
                status.status in WHATSAPP_STATUSES,
                f"statuses[{index}].status",
                "sent, delivered, read or failed",
            )
        check.check()
        return await self._statuses.ingest(request)

    # -- workspace settings (admin) ------------------------------------------------------------

    async def UpdateWorkspaceSettings(
        self,
        request: pb.UpdateWorkspaceSettingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.UpdateWorkspaceSettingsResponse:
        wanted = request.settings
        await self._admin(context, wanted.workspace_id)
        check = errors.Validator()
        check.non_empty(wanted.workspace_id, "settings.workspace_id")
        _check_single_line(check, wanted.sender_name, "settings.sender_name", 100)
        _check_email(check, wanted.from_address, "settings.from_address")
        _check_email(check, wanted.reply_to, "settings.reply_to")
        _check_email(check, wanted.agent_inbox, "settings.agent_inbox")
        _check_url(check, wanted.helpdesk_webhook_url, "settings.helpdesk_webhook_url")
        check.require(
            0 <= wanted.contact_hourly_limit <= 100_000,
            "settings.contact_hourly_limit",
            "0 (the default) to 100000",
        )
        check.require(
            0 <= wanted.workspace_hourly_limit <= 10_000_000,
            "settings.workspace_hourly_limit",
            "0 (the default) to 10000000",
        )
        check.require(
            wanted.whatsapp_phone_number_id.isdigit() or not wanted.whatsapp_phone_number_id,
            "settings.whatsapp_phone_number_id",
            "digits only",
        )
        check.check()
        return await workspace_settings.update(self._pool, self._settings, request)

    async def GetWorkspaceSettings(
        self, request: pb.GetWorkspaceSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWorkspaceSettingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await workspace_settings.get(self._pool, self._settings, request.workspace_id)

    # -- dead letters (admin) ------------------------------------------------------------------

    async def ResendMessage(
        self, request: pb.ResendMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResendMessageResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.message_id, "message_id", max_length=256)
        check.check()
        response = await resending.resend(self._pool, request)
        self._on_queued()
        return response

    async def SetHelpdeskWebhookSecret(
        self,
        request: pb.SetHelpdeskWebhookSecretRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.SetHelpdeskWebhookSecretResponse:
        await self._admin(context, request.workspace_id)
        return await workspace_settings.set_helpdesk_secret(
            self._pool, self._settings, self._secret_box, request
        )
