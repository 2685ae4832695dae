"""Notifier's gRPC layer: validates and maps messages; the rules live in ``domain``, the
delivery in ``worker``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc

from askvault.notifier.v1 import notifier_pb2 as pb
from askvault.notifier.v1 import notifier_pb2_grpc
from notifier import helpdesk_secrets, resending, storage
from notifier.domain import escalation_templates, outbox, templates
from notifier.settings import NotifierSettings
from runtime import auth, convert, errors, idempotency, ids, paging, service_auth
from runtime.database import Connection

_TEMPLATE_TO_KEY = {
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
_KEY_TO_TEMPLATE = {value: key for key, value in _TEMPLATE_TO_KEY.items()}
_CHANNEL_TO_STR = {
    pb.CHANNEL_EMAIL: outbox.EMAIL,
    pb.CHANNEL_WHATSAPP: outbox.WHATSAPP,
    pb.CHANNEL_HELPDESK_WEBHOOK: outbox.HELPDESK_WEBHOOK,
}
_STR_TO_CHANNEL = {value: key for key, value in _CHANNEL_TO_STR.items()}
_STATUS_TO_PB = {
    outbox.QUEUED: pb.MESSAGE_STATUS_QUEUED,
    outbox.SENT: pb.MESSAGE_STATUS_SENT,
    outbox.DELIVERED: pb.MESSAGE_STATUS_DELIVERED,
    outbox.READ: pb.MESSAGE_STATUS_READ,
    outbox.FAILED: pb.MESSAGE_STATUS_FAILED,
    outbox.DEAD: pb.MESSAGE_STATUS_DEAD,
}
_PB_TO_STATUS = {value: key for key, value in _STATUS_TO_PB.items()}
_WHATSAPP_STATUSES = frozenset({outbox.SENT, outbox.DELIVERED, outbox.READ, outbox.FAILED})

_EMAIL = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_ATTACHMENTS = 20
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# A consent or inbound message dated further ahead than this is refused: it would shadow
# every real one until then.
CLOCK_SKEW = timedelta(minutes=5)


def message_pb(record: storage.MessageRecord) -> pb.Message:
    """The proto form of a stored message."""
    return pb.Message(
        message_id=record.message_id,
        workspace_id=record.workspace_id,
        contact_id=record.contact_id,
        template=_KEY_TO_TEMPLATE.get(record.template, pb.TEMPLATE_UNSPECIFIED),
        channel=_STR_TO_CHANNEL.get(record.channel, pb.CHANNEL_UNSPECIFIED),
        status=_STATUS_TO_PB.get(record.status, pb.MESSAGE_STATUS_UNSPECIFIED),
        attempts=record.attempts,
        last_error=record.last_error,
        created_at=convert.timestamp(record.created_at),
        sent_at=convert.timestamp(record.sent_at),
        delivered_at=convert.timestamp(record.delivered_at),
        provider_message_id=record.provider_message_id,
        fallback_from=_STR_TO_CHANNEL.get(record.fallback_from, pb.CHANNEL_UNSPECIFIED),
        next_attempt_at=convert.timestamp(
            record.next_attempt_at if record.status == outbox.QUEUED else None
        ),
        dedup_key=record.dedup_key,
    )


def _consent_pb(record: storage.ConsentRecord) -> pb.ChannelConsent:
    return pb.ChannelConsent(
        channel=_STR_TO_CHANNEL.get(record.channel, pb.CHANNEL_UNSPECIFIED),
        opted_in=record.opted_in,
        source=record.source,
        occurred_at=convert.timestamp(record.occurred_at),
        whatsapp_number=record.whatsapp_number,
    )


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


def _send_fingerprint(request: pb.SendRequest) -> bytes:
    return idempotency.fingerprint(request, "dedup_key")


def _rate_limited(scope: str, limit: int) -> errors.ServiceError:
    return errors.ServiceError(
        errors.Kind.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        f"the {scope} reached its limit of {limit} messages this hour",
        metadata={"scope": scope, "limit": str(limit)},
    )


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

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    def _effective_settings(self, record: storage.WorkspaceSettingsRecord) -> pb.WorkspaceSettings:
        config = self._settings
        return pb.WorkspaceSettings(
            workspace_id=record.workspace_id,
            sender_name=record.sender_name or config.default_sender_name,
            from_address=record.from_address or config.default_from_address,
            reply_to=record.reply_to,
            agent_inbox=record.agent_inbox or config.agent_inbox_address,
            helpdesk_webhook_url=record.helpdesk_webhook_url or config.helpdesk_webhook_url,
            contact_hourly_limit=record.contact_hourly_limit or config.default_contact_hourly_limit,
            workspace_hourly_limit=(
                record.workspace_hourly_limit or config.default_workspace_hourly_limit
            ),
            whatsapp_phone_number_id=(
                record.whatsapp_phone_number_id or config.whatsapp_phone_number_id
            ),
            helpdesk_webhook_signed=helpdesk_secrets.is_signed(record, config),
        )

    # -- sending ---------------------------------------------------------------------------

    def _validate_send(self, request: pb.SendRequest) -> templates.Template:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.dedup_key, "dedup_key", max_length=200)
        key = _TEMPLATE_TO_KEY.get(request.template)
        check.require(key is not None, "template", "a template is required")
        check.require(
            request.channel == pb.CHANNEL_UNSPECIFIED or request.channel in _CHANNEL_TO_STR,
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

    async def Send(
        self, request: pb.SendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendResponse:
        template = self._validate_send(request)
        fingerprint = _send_fingerprint(request)
        workspace_id = request.workspace_id
        recipient = request.recipient
        async with self._pool.acquire() as connection, connection.transaction():
            message_id = ids.new_id("msg")
            existing = await storage.claim_dedup_key(
                connection, workspace_id, request.dedup_key, message_id, fingerprint
            )
            if existing is not None:
                existing_id, existing_fingerprint = existing
                if existing_fingerprint != fingerprint:
                    raise errors.ServiceError(
                        errors.Kind.INVALID_ARGUMENT,
                        "IDEMPOTENCY_MISMATCH",
                        "this dedup key was used for another message",
                    )
                record = await storage.get_message(connection, workspace_id, existing_id)
                assert record is not None
                return pb.SendResponse(message=message_pb(record), deduplicated=True)
            ws = await storage.get_workspace_settings(connection, workspace_id)
            variables = dict(request.variables)
            requested = _CHANNEL_TO_STR.get(request.channel, "")
            if template.key == "handoff":
                route = outbox.choose_handoff_route(
                    requested,
                    outbox.HandoffDestinations(
                        ws.agent_inbox or self._settings.agent_inbox_address,
                        ws.helpdesk_webhook_url or self._settings.helpdesk_webhook_url,
                    ),
                )
                # The customer's details travel as context; the recipient is the agent.
                if recipient.email:
                    variables.setdefault("customer_email", recipient.email)
                if recipient.name:
                    variables.setdefault("customer_name", recipient.name)
            else:
                consents = {
                    c.channel: outbox.Consent(c.opted_in, c.whatsapp_number)
                    for c in await storage.get_consents(
                        connection, workspace_id, recipient.contact_id
                    )
                }
                route = outbox.choose_route(
                    requested=requested,
                    email=recipient.email,
                    whatsapp_number=recipient.whatsapp_number,
                    whatsapp_consent=consents.get(outbox.WHATSAPP),
                    email_consent=consents.get(outbox.EMAIL),
                    whatsapp_enabled=bool(
                        ws.whatsapp_phone_number_id or self._settings.whatsapp_phone_number_id
                    ),
                    has_attachments=bool(request.attachments),
                    whatsapp_capable=templates.whatsapp_capable(template),
                    answers_opt_out=template.key == templates.WHATSAPP_OPTED_OUT,
                )
                # Counted in a fixed order (contact, then workspace) so that concurrent
                # sends wait on the counter rows instead of deadlocking.
                contact_limit = (
                    ws.contact_hourly_limit or self._settings.default_contact_hourly_limit
                )
                if not await storage.count_send(
                    connection, workspace_id, f"contact:{recipient.contact_id}", contact_limit
                ):
                    raise _rate_limited("contact", contact_limit)
            workspace_limit = (
                ws.workspace_hourly_limit or self._settings.default_workspace_hourly_limit
            )
            if not await storage.count_send(connection, workspace_id, "", workspace_limit):
                raise _rate_limited("workspace", workspace_limit)
            record = await storage.insert_message(
                connection,
                storage.NewMessage(
                    workspace_id=workspace_id,
                    message_id=message_id,
                    contact_id=recipient.contact_id,
                    recipient_email=route.email,
                    recipient_whatsapp=route.whatsapp_number,
                    recipient_name=recipient.name,
                    template=template.key,
                    variables=variables,
                    attachments=tuple(
                        storage.AttachmentRecord(a.filename, a.content_type, a.url)
                        for a in request.attachments
                    ),
                    channel=route.channel,
                    webhook_url=route.webhook_url,
                    dedup_key=request.dedup_key,
                ),
            )
        self._on_queued()
        return pb.SendResponse(message=message_pb(record), deduplicated=False)

    async def GetMessage(
        self, request: pb.GetMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMessageResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.message_id, "message_id")
        check.check()
        async with self._pool.acquire() as connection:
            record = await storage.get_message(connection, request.workspace_id, request.message_id)
        if record is None:
            raise errors.not_found("message")
        return pb.GetMessageResponse(message=message_pb(record))

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListMessagesResponse:
        if service_auth.called_by_admin():
            # A call without a service's credential is an admin's or nobody's: the caller is
            # proven before anything about the request is answered.
            await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(0 <= request.page_size <= MAX_PAGE_SIZE, "page_size", f"0 to {MAX_PAGE_SIZE}")
        check.require(
            request.status == pb.MESSAGE_STATUS_UNSPECIFIED or request.status in _PB_TO_STATUS,
            "status",
            "unknown status",
        )
        check.check()
        if request.contact_id == "" and not service_auth.called_by_admin():
            # The whole workspace's messages are an admin's to read.
            await self._admin(context, request.workspace_id)
        after = paging.decode_cursor(request.page_token)
        size = request.page_size or DEFAULT_PAGE_SIZE
        async with self._pool.acquire() as connection:
            records = await storage.list_messages(
                connection,
                request.workspace_id,
                request.contact_id,
                after,
                size + 1,
                status=_PB_TO_STATUS.get(request.status, ""),
            )
        page = records[:size]
        return pb.ListMessagesResponse(
            messages=[message_pb(r) for r in page],
            next_page_token=paging.encode_cursor(page[-1].created_at, page[-1].message_id)
            if len(records) > size
            else "",
        )

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

        async def record(connection: Connection) -> pb.SetChannelConsentResponse:
            stored = await storage.record_consent(
                connection,
                request.workspace_id,
                request.contact_id,
                _CHANNEL_TO_STR[consent.channel],
                consent.opted_in,
                consent.source,
                occurred_at,
                consent.whatsapp_number,
            )
            return pb.SetChannelConsentResponse(consent=_consent_pb(stored))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.SetChannelConsentResponse,
            record,
        )

    async def GetChannelConsent(
        self, request: pb.GetChannelConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChannelConsentResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        check.check()
        async with self._pool.acquire() as connection:
            records = await storage.get_consents(
                connection, request.workspace_id, request.contact_id
            )
        return pb.GetChannelConsentResponse(consents=[_consent_pb(r) for r in records])

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
        async with self._pool.acquire() as connection, connection.transaction():
            latest = await storage.record_inbound(
                connection,
                request.workspace_id,
                request.contact_id,
                request.provider_message_id,
                request.whatsapp_number,
                min(received_at, now),
            )
        return pb.RecordInboundWhatsAppResponse(
            window_closes_at=convert.timestamp(latest + outbox.WHATSAPP_WINDOW)
        )

    async def IngestWhatsAppStatus(
        self, request: pb.IngestWhatsAppStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestWhatsAppStatusResponse:
        check = errors.Validator()
        check.require(len(request.statuses) <= 1000, "statuses", "at most 1000")
        for index, status in enumerate(request.statuses):
            check.non_empty(status.provider_message_id, f"statuses[{index}].provider_message_id")
            check.require(
                status.status in _WHATSAPP_STATUSES,
                f"statuses[{index}].status",
                "sent, delivered, read or failed",
            )
        check.check()
        policy = outbox.RetryPolicy(
            self._settings.max_attempts,
            self._settings.retry_backoff_base_seconds,
            self._settings.retry_backoff_cap_seconds,
        )
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
                        change.failure,
                        channel=message.channel,
                        attempts=message.attempts,
                        can_email=bool(message.recipient_email)
                        and (email_consent is None or email_consent.opted_in),
                        policy=policy,
                    )
                    if isinstance(decision, outbox.FallBackToEmail):
                        await storage.requeue_after_sent(
                            connection, message, outbox.EMAIL, 0.0, decision.error, occurred_at
                        )
                        requeued = True
                    elif isinstance(decision, outbox.Retry):
                        await storage.requeue_after_sent(
                            connection,
                            message,
                            outbox.WHATSAPP,
                            decision.delay_seconds,
                            decision.error,
                            occurred_at,
                        )
                        requeued = True
                    else:
                        await storage.fail_after_sent(
                            connection, message, occurred_at, decision.error
                        )
        if requeued:
            self._on_queued()
        return pb.IngestWhatsAppStatusResponse(applied=applied)

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

        async def update(connection: Connection) -> pb.UpdateWorkspaceSettingsResponse:
            stored = await storage.save_workspace_settings(
                connection,
                storage.WorkspaceSettingsRecord(
                    workspace_id=wanted.workspace_id,
                    sender_name=wanted.sender_name,
                    from_address=wanted.from_address,
                    reply_to=wanted.reply_to,
                    agent_inbox=wanted.agent_inbox,
                    helpdesk_webhook_url=wanted.helpdesk_webhook_url,
                    contact_hourly_limit=wanted.contact_hourly_limit,
                    workspace_hourly_limit=wanted.workspace_hourly_limit,
                    whatsapp_phone_number_id=wanted.whatsapp_phone_number_id,
                ),
            )
            return pb.UpdateWorkspaceSettingsResponse(settings=self._effective_settings(stored))

        return await idempotency.run_once(
            self._pool,
            wanted.workspace_id,
            request.idempotency_key,
            request,
            pb.UpdateWorkspaceSettingsResponse,
            update,
        )

    async def GetWorkspaceSettings(
        self, request: pb.GetWorkspaceSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWorkspaceSettingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        async with self._pool.acquire() as connection:
            stored = await storage.get_workspace_settings(connection, request.workspace_id)
        return pb.GetWorkspaceSettingsResponse(settings=self._effective_settings(stored))

    # -- dead letters (admin) ------------------------------------------------------------------

    async def ResendMessage(
        self, request: pb.ResendMessageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResendMessageResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.message_id, "message_id", max_length=256)
        check.check()

        async def resend(connection: Connection) -> pb.ResendMessageResponse:
            record = await resending.requeue(connection, request.workspace_id, request.message_id)
            return pb.ResendMessageResponse(message=message_pb(record))

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.ResendMessageResponse,
            resend,
        )
        self._on_queued()
        return response

    async def SetHelpdeskWebhookSecret(
        self,
        request: pb.SetHelpdeskWebhookSecretRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.SetHelpdeskWebhookSecretResponse:
        await self._admin(context, request.workspace_id)

        async def store(connection: Connection) -> pb.SetHelpdeskWebhookSecretResponse:
            stored = await helpdesk_secrets.set_secret(
                connection, self._secret_box, request.workspace_id, request.secret
            )
            return pb.SetHelpdeskWebhookSecretResponse(settings=self._effective_settings(stored))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.SetHelpdeskWebhookSecretResponse,
            store,
        )
