"""Connecting a workspace's Stripe account (its key sealed, a webhook endpoint registered for
the events the gateway needs, its signing secret sealed, the mirror started) and retiring a
webhook signing secret after an overlap. CheckWebhookSetup is in webhook_setup.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import account_store, webhook_setup, webhooks
from billing_gateway.accounts import AccountDirectory, key_binding, secret_binding
from billing_gateway.ledger import Clock
from billing_gateway.mirror import Mirror
from billing_gateway.stripe_api import StripeAccount, StripeGateway
from runtime import errors, idempotency
from runtime.database import Connection
from runtime.secretbox import SecretBox

# The longest a retired webhook signing secret may keep verifying: long enough to roll a new
# secret out, short enough that a forgotten retirement still happens.
MAX_SECRET_OVERLAP_SECONDS = 30 * 86_400


@dataclass(frozen=True)
class AccountSetup:
    """A workspace's Stripe account and webhook secrets."""

    _pool: asyncpg.Pool
    _box: SecretBox
    _stripe: StripeGateway
    _mirror: Mirror
    _accounts: AccountDirectory
    _clock: Clock

    async def connect(self, request: pb.ConnectAccountRequest) -> pb.ConnectAccountResponse:
        """The workspace connected to the (validated) request's Stripe account."""
        account = StripeAccount(
            request.workspace_id, request.secret_key, request.connected_account_id
        )

        async def effect(connection: Connection) -> pb.ConnectAccountResponse:
            details = await self._stripe.call(
                account, "account.retrieve", lambda c: c.v1.accounts.retrieve_current_async()
            )
            endpoint = await self._stripe.call(
                account,
                "webhook_endpoints.create",
                lambda c: c.v1.webhook_endpoints.create_async(
                    {
                        "url": request.webhook_url,
                        "enabled_events": cast(Any, list(webhooks.NEEDED_EVENTS)),
                        "description": "AskVault billing skill",
                    },
                    {"idempotency_key": f"askvault-connect-{request.idempotency_key}"},
                ),
            )
            livemode = bool(getattr(details, "livemode", False) or account.livemode)
            await account_store.save_account(
                connection,
                request.workspace_id,
                self._box.seal(request.secret_key.encode(), key_binding(request.workspace_id)),
                request.connected_account_id,
                livemode,
                str(endpoint.id),
                request.webhook_url,
                list(webhooks.NEEDED_EVENTS),
            )
            await account_store.add_webhook_secret(
                connection,
                request.workspace_id,
                str(endpoint.id),
                self._box.seal(
                    str(endpoint.secret).encode(),
                    secret_binding(request.workspace_id, str(endpoint.id)),
                ),
            )
            # The mirror copies every list of the account, and catches up on events from now.
            await self._mirror.start(connection, request.workspace_id)
            return pb.ConnectAccountResponse(
                webhook_endpoint_id=str(endpoint.id),
                livemode=livemode,
                enabled_events=list(webhooks.NEEDED_EVENTS),
            )

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.ConnectAccountResponse,
            effect,
        )
        self._accounts.forget(request.workspace_id)
        return response

    async def retire_secret(
        self, request: pb.RetireWebhookSecretRequest
    ) -> pb.RetireWebhookSecretResponse:
        """A signing secret that verifies for ``overlap_seconds`` more, then no longer."""

        async def effect(connection: Connection) -> pb.RetireWebhookSecretResponse:
            now = self._clock()
            retired = await account_store.retire_webhook_secret(
                connection,
                request.workspace_id,
                request.secret_id,
                now + timedelta(seconds=request.overlap_seconds),
            )
            if retired is None:
                raise errors.not_found("webhook secret")
            return pb.RetireWebhookSecretResponse(secret=webhook_setup.secret_pb(retired, now))

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.RetireWebhookSecretResponse,
            effect,
        )
        self._accounts.forget(request.workspace_id)
        return response
