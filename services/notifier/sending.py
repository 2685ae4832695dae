"""Send: a message queued in the outbox once per dedup key, on the route its recipient's
consents and the workspace allow, within the contact's and the workspace's hourly limits
(sliding windows: the sends of the last hour, not of the clock hour).

The dedup claim, the counters and the message commit together: a refused send counts
nothing, and a repeated one answers the first message without counting again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import consent_store, convert, message_store, settings_store
from notifier.domain import outbox, templates
from notifier.settings import NotifierSettings
from runtime import errors, idempotency, ids
from runtime.database import Connection


async def _count_or_refuse(
    connection: Connection, workspace_id: str, scope: str, limit: int, what: str
) -> None:
    """Counts one send against the scope's last hour; RESOURCE_EXHAUSTED RATE_LIMITED with
    ``retry_after_seconds`` (when the window takes a send again) when it is full, so that a
    caller defers the message to then instead of retrying on a guess."""
    if await message_store.count_send(connection, workspace_id, scope, limit):
        return
    reopens_in = await message_store.send_window_reopens_in(connection, workspace_id, scope, limit)
    raise errors.ServiceError(
        errors.Kind.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        f"the {what} reached its limit of {limit} messages in the last hour",
        metadata={
            "scope": what,
            "limit": str(limit),
            "retry_after_seconds": str(max(1, math.ceil(reopens_in))),
        },
    )


class Sending:
    """Queues messages; ``on_queued`` wakes this replica's outbox workers."""

    def __init__(
        self, pool: asyncpg.Pool, settings: NotifierSettings, on_queued: Callable[[], None]
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._on_queued = on_queued

    async def send(self, request: pb.SendRequest, template: templates.Template) -> pb.SendResponse:
        """The queued message (or the one queued before under the same dedup key);
        INVALID_ARGUMENT IDEMPOTENCY_MISMATCH when that key was used for another message,
        RESOURCE_EXHAUSTED RATE_LIMITED over a limit."""
        fingerprint = idempotency.fingerprint(request, "dedup_key")
        workspace_id = request.workspace_id
        async with self._pool.acquire() as connection, connection.transaction():
            message_id = ids.new_id("msg")
            existing = await message_store.claim_dedup_key(
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
                record = await message_store.get_message(connection, workspace_id, existing_id)
                assert record is not None
                return pb.SendResponse(message=convert.message_pb(record), deduplicated=True)
            record = await self._queue(connection, request, template, message_id)
        self._on_queued()
        return pb.SendResponse(message=convert.message_pb(record), deduplicated=False)

    async def _queue(
        self,
        connection: Connection,
        request: pb.SendRequest,
        template: templates.Template,
        message_id: str,
    ) -> message_store.MessageRecord:
        """Routes, counts and stores a new message, in the caller's transaction."""
        workspace_id = request.workspace_id
        recipient = request.recipient
        ws = await settings_store.get_workspace_settings(connection, workspace_id)
        variables = dict(request.variables)
        requested = convert.CHANNEL_TO_STR.get(request.channel, "")
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
                for c in await consent_store.get_consents(
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
            contact_limit = ws.contact_hourly_limit or self._settings.default_contact_hourly_limit
            await _count_or_refuse(
                connection,
                workspace_id,
                f"contact:{recipient.contact_id}",
                contact_limit,
                "contact",
            )
        workspace_limit = ws.workspace_hourly_limit or self._settings.default_workspace_hourly_limit
        await _count_or_refuse(connection, workspace_id, "", workspace_limit, "workspace")
        return await message_store.insert_message(
            connection,
            message_store.NewMessage(
                workspace_id=workspace_id,
                message_id=message_id,
                contact_id=recipient.contact_id,
                recipient_email=route.email,
                recipient_whatsapp=route.whatsapp_number,
                recipient_name=recipient.name,
                template=template.key,
                variables=variables,
                attachments=tuple(
                    message_store.AttachmentRecord(a.filename, a.content_type, a.url)
                    for a in request.attachments
                ),
                channel=route.channel,
                webhook_url=route.webhook_url,
                dedup_key=request.dedup_key,
            ),
        )
