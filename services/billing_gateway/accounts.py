"""Workspaces' Stripe credentials and webhook signing secrets, opened from their sealed
form and cached briefly (a rotation is picked up on the next miss)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

from billing_gateway import storage
from billing_gateway.stripe_api import StripeAccount
from runtime import errors
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

    def __init__(self, pool: asyncpg.Pool, secret_box: SecretBox) -> None:
        self._pool = pool
        self._box = secret_box
        self._accounts: dict[str, tuple[StripeAccount, float]] = {}
        self._secrets: dict[str, tuple[list[str], float]] = {}

    def forget(self, workspace_id: str) -> None:
        """Drops the cache of a workspace (after ConnectAccount)."""
        self._accounts.pop(workspace_id, None)
        self._secrets.pop(workspace_id, None)

    async def account(self, workspace_id: str) -> StripeAccount:
        """The workspace's Stripe account, or FAILED_PRECONDITION ACCOUNT_NOT_CONNECTED."""
        cached = self._accounts.get(workspace_id)
        if cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        async with self._pool.acquire() as connection:
            record = await storage.get_account(connection, workspace_id)
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

    async def signing_secrets(self, workspace_id: str, *, fresh: bool = False) -> list[str]:
        """The workspace's active signing secrets, newest first."""
        cached = self._secrets.get(workspace_id)
        if not fresh and cached is not None and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        async with self._pool.acquire() as connection:
            sealed = await storage.webhook_secrets(connection, workspace_id)
        opened = [
            self._box.open(ciphertext, secret_binding(workspace_id, secret_id)).decode()
            for secret_id, ciphertext in sealed.items()
        ]
        self._secrets[workspace_id] = (opened, time.monotonic())
        return opened
