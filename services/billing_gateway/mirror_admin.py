"""The mirror as an admin sees and sets it: its backfills, freshness and size, and the
workspace's freshness bound."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import convert, mirror_store
from billing_gateway.mirror import Mirror
from billing_gateway.settings import BillingGatewaySettings
from runtime import idempotency
from runtime.database import Connection

# The longest freshness bound a workspace may set: a week-old answer is already too old.
MAX_MIRROR_AGE_SECONDS = 7 * 86_400


@dataclass(frozen=True)
class MirrorAdmin:
    """The workspace's mirror status and settings."""

    _pool: asyncpg.Pool
    _mirror: Mirror
    _settings: BillingGatewaySettings

    async def status(self, request: pb.GetMirrorStatusRequest) -> pb.GetMirrorStatusResponse:
        """The workspace's backfills, freshness bound and object count."""
        async with self._pool.acquire() as connection:
            backfills = await mirror_store.backfills_of(connection, request.workspace_id)
            freshness = await self._mirror.freshness(connection, request.workspace_id)
            workspace = await mirror_store.mirror_workspace(connection, request.workspace_id)
            count = await mirror_store.count_mirrored(connection, request.workspace_id)
        response = pb.GetMirrorStatusResponse(
            backfills=[
                pb.MirrorBackfill(
                    object_type=backfill.object_type,
                    done=backfill.done,
                    objects_copied=backfill.objects_copied,
                    pages_copied=backfill.pages_copied,
                    started_at=convert.timestamp(backfill.started_at),
                    finished_at=convert.timestamp(backfill.finished_at),
                    last_error=backfill.last_error,
                )
                for backfill in backfills
            ],
            backfill_done=freshness.complete,
            objects=count,
        )
        if workspace is not None and workspace.caught_up_to is not None:
            response.caught_up_to.FromSeconds(workspace.caught_up_to)
        response.max_age.FromSeconds(freshness.max_age_seconds)
        return response

    async def update_settings(
        self, request: pb.UpdateMirrorSettingsRequest, seconds: int
    ) -> pb.UpdateMirrorSettingsResponse:
        """The workspace's freshness bound set to ``seconds`` (0: the default)."""

        async def effect(connection: Connection) -> pb.UpdateMirrorSettingsResponse:
            await mirror_store.set_mirror_max_age(connection, request.workspace_id, seconds or None)
            response = pb.UpdateMirrorSettingsResponse()
            response.max_age.FromSeconds(seconds or self._settings.mirror_max_age_seconds)
            return response

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.UpdateMirrorSettingsResponse,
            effect,
        )
