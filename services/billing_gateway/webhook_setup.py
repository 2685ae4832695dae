"""CheckWebhookSetup: whether the workspace's Stripe webhook endpoint is registered, enabled
and subscribed to every event the gateway needs, its signing secrets (metadata only), and its
health: events received in the last 24 hours and the latest processing error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import account_store, convert, inbox_store, webhooks
from billing_gateway.accounts import AccountDirectory
from billing_gateway.stripe_api import StripeGateway, to_json
from runtime import errors

# The window events_received_24h counts.
HEALTH_WINDOW = timedelta(hours=24)


def secret_pb(secret: account_store.WebhookSecretMetadata, now: datetime) -> pb.WebhookSecret:
    """A signing secret's metadata as the API shows it (never the secret)."""
    return pb.WebhookSecret(
        secret_id=secret.secret_id,
        created_at=convert.timestamp(secret.created_at),
        retires_at=convert.timestamp(secret.retired_at),
        retired=secret.retired_at is not None and secret.retired_at <= now,
    )


async def check(
    pool: asyncpg.Pool,
    stripe: StripeGateway,
    accounts: AccountDirectory,
    workspace_id: str,
    now: datetime,
) -> pb.CheckWebhookSetupResponse:
    """The endpoint as Stripe has it and the inbox's figures."""
    account = await accounts.account(workspace_id)
    async with pool.acquire() as connection:
        record = await account_store.get_account(connection, workspace_id)
        last = await inbox_store.last_event_received_at(connection, workspace_id)
        secrets = await account_store.webhook_secret_metadata(connection, workspace_id)
        # Row ages are the database's wall time, not the (injectable) scheduling clock.
        health = await inbox_store.webhook_health(
            connection, workspace_id, datetime.now(UTC) - HEALTH_WINDOW
        )
    assert record is not None
    response = pb.CheckWebhookSetupResponse(
        last_event_received_at=convert.timestamp(last),
        url=record.webhook_url,
        missing_event_types=list(webhooks.NEEDED_EVENTS),
        webhook_secrets=[secret_pb(secret, now) for secret in secrets],
        events_received_24h=health.received,
        last_error=health.last_error,
        last_error_at=convert.timestamp(health.last_error_at),
    )
    if not record.webhook_endpoint_id:
        return response
    try:
        endpoint = to_json(
            await stripe.call(
                account,
                "webhook_endpoints.retrieve",
                lambda c: c.v1.webhook_endpoints.retrieve_async(record.webhook_endpoint_id),
            )
        )
    except errors.ServiceError as error:
        if error.kind is not errors.Kind.NOT_FOUND:
            raise
        return response
    enabled = list(endpoint.get("enabled_events") or [])
    del response.missing_event_types[:]
    if "*" not in enabled:
        response.missing_event_types.extend(e for e in webhooks.NEEDED_EVENTS if e not in enabled)
    response.registered = True
    response.enabled = endpoint.get("status") == "enabled"
    response.url = str(endpoint.get("url") or record.webhook_url)
    return response
