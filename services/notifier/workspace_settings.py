"""A workspace's messaging settings (sender, addresses, the helpdesk webhook, hourly limits,
the WhatsApp number), read and changed by an admin. What is answered is what applies: a
setting left empty shows the service's default."""

from __future__ import annotations

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import helpdesk_secrets, settings_store
from notifier.settings import NotifierSettings
from runtime import idempotency
from runtime.database import Connection
from runtime.secretbox import SecretBox


def effective(
    record: settings_store.WorkspaceSettingsRecord, config: NotifierSettings
) -> pb.WorkspaceSettings:
    """The workspace's settings with the service's defaults where it has none."""
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


async def get(
    pool: asyncpg.Pool, config: NotifierSettings, workspace_id: str
) -> pb.GetWorkspaceSettingsResponse:
    """The settings that apply to the workspace."""
    async with pool.acquire() as connection:
        stored = await settings_store.get_workspace_settings(connection, workspace_id)
    return pb.GetWorkspaceSettingsResponse(settings=effective(stored, config))


async def update(
    pool: asyncpg.Pool, config: NotifierSettings, request: pb.UpdateWorkspaceSettingsRequest
) -> pb.UpdateWorkspaceSettingsResponse:
    """Stores the request's settings (empty: the default); runs once per idempotency key."""
    wanted = request.settings

    async def store(connection: Connection) -> pb.UpdateWorkspaceSettingsResponse:
        stored = await settings_store.save_workspace_settings(
            connection,
            settings_store.WorkspaceSettingsRecord(
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
        return pb.UpdateWorkspaceSettingsResponse(settings=effective(stored, config))

    return await idempotency.run_once(
        pool,
        wanted.workspace_id,
        request.idempotency_key,
        request,
        pb.UpdateWorkspaceSettingsResponse,
        store,
    )


async def set_helpdesk_secret(
    pool: asyncpg.Pool,
    config: NotifierSettings,
    secret_box: SecretBox | None,
    request: pb.SetHelpdeskWebhookSecretRequest,
) -> pb.SetHelpdeskWebhookSecretResponse:
    """Stores (or clears) the workspace's helpdesk signing secret, sealed; once per key."""

    async def store(connection: Connection) -> pb.SetHelpdeskWebhookSecretResponse:
        stored = await helpdesk_secrets.set_secret(
            connection, secret_box, request.workspace_id, request.secret
        )
        return pb.SetHelpdeskWebhookSecretResponse(settings=effective(stored, config))

    return await idempotency.run_once(
        pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.SetHelpdeskWebhookSecretResponse,
        store,
    )
