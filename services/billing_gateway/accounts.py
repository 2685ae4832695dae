"""Workspaces' Stripe credentials and webhook signing secrets, opened from their sealed
form. Accounts are cached briefly (a reconnect is picked up on the next miss); which signing
secrets still verify is read on every webhook, so a retirement holds on every replica at
once, and only the opened secrets are cached."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from billing_gateway import account_store
from billing_gateway.stripe_api import StripeAccount
from runtime import errors
from runtime.database import Connection
from runtime.secretbox import SecretBox

# Seconds a workspace's opened secrets are reused before they are read again.
CACHE_SECONDS = 30.0


def key_binding(workspace_id: str) -> str:
    """What a workspace's sealed Stripe key is bound to."""
    return f"{workspace_id}/stripe/secret_key"


def secret_binding(workspace_id: str, secret_id: str) -> str:
    """What a sealed webhook signing secret is bound to."""
    return f"{workspace_id}/webhook/{secret_id}"


@dataclass
class _Cached:
    value: object
    loaded_at: float


class AccountDirectory:
    """Opens accounts and signing secrets, with a short cache."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secret_box: SecretBox,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._box = secret_box
        # The gateway's clock: what a secret's retirement time is compared with.
        self._clock = clock
        self._accounts: dict[str, tuple[StripeAccount, float]] = {}
        # (workspace, secret id, ciphertext) -> the opened secret; a secret is only used
        # while the database still lists it as not retired.
        self._opened: dict[tuple[str, str, bytes], str] = {}

    def forget(self, workspace_id: str) -> None:
        """Drops the cache of a workspace (after ConnectAccount)."""
        self._accounts.pop(workspace_id, None)
        for cached in [k for k in self._opened if k[0] == workspace_id]:
            del self._opened[cached]

    async def account(self, workspace_id: str) -> StripeAccount:
        """The workspace's Stripe account, or FAILED_PRECONDITION ACCOUNT_NOT_CONNECTED."""
        cached = self._accounts.get(workspace_id)
        if cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        async with self._pool.acquire() as connection:
            record = await account_store.get_account(connection, workspace_id)
        if record is None:
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "ACCOUNT_NOT_CONNECTED",
                "the workspace has no Stripe account connected",
            )
        key = self._box.open(record.secret_key_ciphertext, key_binding(workspace_id)).decode()
        account = StripeAccount(workspace_id, key, record.connected_account_id)
        self._accounts[workspace_id] = (account, time.monotonic())
        return account

    async def signing_secrets(
        self, workspace_id: str, connection: Connection | None = None
    ) -> list[str]:
        """The workspace's signing secrets not retired now (by the gateway's clock), newest
        first (read on ``connection`` when given, else on a connection of the pool)."""
        if connection is not None:
            sealed = await account_store.unretired_webhook_secrets(
                connection, workspace_id, self._clock()
            )
        else:
            async with self._pool.acquire() as acquired:
                sealed = await account_store.unretired_webhook_secrets(
                    acquired, workspace_id, self._clock()
                )
        opened = []
        for secret in sealed:
            cache_key = (workspace_id, secret.secret_id, secret.ciphertext)
            plain = self._opened.get(cache_key)
            if plain is None:
                binding = secret_binding(workspace_id, secret.secret_id)
                plain = self._box.open(secret.ciphertext, binding).decode()
                self._opened[cache_key] = plain
            opened.append(plain)
        return opened
