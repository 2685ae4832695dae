"""A workspace's HMAC secrets: sealed when an admin adds them, retired, listed, and opened
(through the replica's SecretCache) when a visitor is verified.

Every change also drops this replica's cached secrets of the workspace once it committed or
failed, so this replica serves the change at once (others within the cache's TTL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from askvault.identity.v1 import identity_pb2 as pb
from identity import convert, storage
from identity.secret_cache import SecretCache, WorkspaceSecrets
from identity.settings import IdentitySettings
from runtime import errors, idempotency
from runtime.database import Connection
from runtime.secretbox import SecretBox


def sealing_context(workspace_id: str, purpose: str, key_id: str) -> str:
    """What a secret's ciphertext is bound to. Each purpose has its own context: a user_hash
    secret's ciphertext does not open as a token secret even if a row's purpose were changed
    in the database."""
    return f"{workspace_id}/hmac/{purpose}/{key_id}"


def unknown_workspace() -> errors.ServiceError:
    """A workspace without secrets. Same reason as a bad hash would be misleading; an
    unknown workspace is its own reason, and still says nothing about any secret."""
    return errors.ServiceError(
        errors.Kind.UNAUTHENTICATED, "WORKSPACE_NOT_FOUND", "unknown workspace"
    )


class WorkspaceSecretStore:
    """The secrets of every workspace, opened with ``secret_box`` and cached per replica."""

    def __init__(self, pool: asyncpg.Pool, secret_box: SecretBox, settings: IdentitySettings):
        self._pool = pool
        self._secret_box = secret_box
        self._cache = SecretCache(
            ttl_seconds=settings.secret_cache_ttl_seconds,
            max_entries=settings.secret_cache_max_entries,
        )

    async def active(self, workspace_id: str, purpose: str) -> WorkspaceSecrets:
        """The active secrets of one purpose, opened, and the workspace's customer metadata
        key: from memory when loaded less than SECRET_CACHE_TTL_SECONDS ago."""

        async def load() -> WorkspaceSecrets | None:
            async with self._pool.acquire() as connection:
                found = await storage.active_secrets(connection, workspace_id, purpose)
            if found is None:
                return None
            return WorkspaceSecrets.of(
                {
                    key_id: self._secret_box.open(
                        sealed.ciphertext,
                        sealing_context(workspace_id, purpose, key_id)
                        if sealed.purpose_sealed
                        # Sealed before purposes existed: only user_hash secrets (migration
                        # 0002).
                        else f"{workspace_id}/hmac/{key_id}",
                    )
                    for key_id, sealed in found.sealed.items()
                },
                found.customer_metadata_key,
            )

        secrets = await self._cache.get(workspace_id, purpose, load)
        if secrets is None:
            raise unknown_workspace()
        return secrets

    @asynccontextmanager
    async def changing(self, workspace_id: str) -> AsyncIterator[None]:
        """Around a change of the workspace's secrets or settings: afterwards (committed or
        failed) this replica serves the change at once."""
        try:
            yield
        finally:
            self._cache.invalidate(workspace_id)

    async def add(self, request: pb.AddSecretRequest, purpose: str) -> pb.AddSecretResponse:
        """Seals and stores a new secret; ALREADY_EXISTS when its key id is taken."""
        sealed = self._secret_box.seal(
            request.secret, sealing_context(request.workspace_id, purpose, request.key_id)
        )

        async def add(connection: Connection) -> pb.AddSecretResponse:
            record = await storage.insert_secret(
                connection, request.workspace_id, request.key_id, sealed, purpose
            )
            if record is None:
                raise errors.ServiceError(
                    errors.Kind.ALREADY_EXISTS, "ALREADY_EXISTS", "the key id is taken"
                )
            return pb.AddSecretResponse(secret=convert.secret_pb(record))

        async with self.changing(request.workspace_id):
            return await idempotency.run_once(
                self._pool,
                request.workspace_id,
                request.idempotency_key,
                request,
                pb.AddSecretResponse,
                add,
            )

    async def retire(self, request: pb.RetireSecretRequest) -> pb.RetireSecretResponse:
        """Retires a secret: it verifies nothing from now on."""

        async def retire(connection: Connection) -> pb.RetireSecretResponse:
            record = await storage.retire_secret(connection, request.workspace_id, request.key_id)
            if record is None:
                raise errors.not_found("secret")
            return pb.RetireSecretResponse(secret=convert.secret_pb(record))

        async with self.changing(request.workspace_id):
            return await idempotency.run_once(
                self._pool,
                request.workspace_id,
                request.idempotency_key,
                request,
                pb.RetireSecretResponse,
                retire,
            )

    async def list(self, workspace_id: str) -> pb.ListSecretsResponse:
        """What may be said of every secret of the workspace."""
        async with self._pool.acquire() as connection:
            records = await storage.list_secrets(connection, workspace_id)
        return pb.ListSecretsResponse(secrets=[convert.secret_pb(r) for r in records])
