"""A workspace's identity settings (the Stripe metadata key naming its user ids): read and
changed by an admin. A change drops this replica's cached secrets of the workspace, which
carry the key."""

from __future__ import annotations

import asyncpg

from askvault.identity.v1 import identity_pb2 as pb
from identity import convert, storage
from identity.workspace_secrets import WorkspaceSecretStore
from runtime import errors, idempotency
from runtime.database import Connection


def _not_found() -> errors.ServiceError:
    return errors.not_found("workspace", "WORKSPACE_NOT_FOUND")


async def get(pool: asyncpg.Pool, workspace_id: str) -> pb.GetWorkspaceSettingsResponse:
    """The workspace's settings; NOT_FOUND WORKSPACE_NOT_FOUND for an unknown workspace."""
    async with pool.acquire() as connection:
        found = await storage.get_workspace_settings(connection, workspace_id)
    if found is None:
        raise _not_found()
    return pb.GetWorkspaceSettingsResponse(settings=convert.settings_pb(found))


async def update(
    pool: asyncpg.Pool,
    secrets: WorkspaceSecretStore,
    request: pb.UpdateWorkspaceSettingsRequest,
) -> pb.UpdateWorkspaceSettingsResponse:
    """Stores the request's settings; runs once per idempotency key."""
    settings = storage.WorkspaceSettings(request.settings.customer_metadata_key)

    async def store(connection: Connection) -> pb.UpdateWorkspaceSettingsResponse:
        stored = await storage.set_workspace_settings(connection, request.workspace_id, settings)
        if stored is None:
            raise _not_found()
        return pb.UpdateWorkspaceSettingsResponse(settings=convert.settings_pb(stored))

    async with secrets.changing(request.workspace_id):
        return await idempotency.run_once(
            pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.UpdateWorkspaceSettingsResponse,
            store,
        )
