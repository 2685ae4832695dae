"""Stripe webhooks: the event types we ask for, ingestion (verify, store the raw bytes, ack),
and the tags a subscription gives the customer's contacts. What a stored event does is in
event_effects.py; the inbox worker that applies them is in inbox.py."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from askvault.identity.v1 import identity_pb2
from billing_gateway import convert, gateway_metrics, inbox_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import billing, signatures
from runtime import errors

logger = logging.getLogger(__name__)

Json = dict[str, Any]

# The event types the skill needs; ConnectAccount registers exactly these.
NEEDED_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "charge.refunded",
    # The mirror of Stripe (mirror.py): every change of the objects it keeps.
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "product.created",
    "product.updated",
    "product.deleted",
    "price.created",
    "price.updated",
    "price.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.deleted",
    "charge.succeeded",
    "charge.failed",
    "charge.updated",
    "charge.captured",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "payment_method.attached",
    "payment_method.updated",
    "payment_method.detached",
)
MAX_PAYLOAD_BYTES = 1024 * 1024

_TIERS = {
    "free": identity_pb2.PLAN_TIER_FREE,
    "starter": identity_pb2.PLAN_TIER_STARTER,
    "growth": identity_pb2.PLAN_TIER_GROWTH,
    "business": identity_pb2.PLAN_TIER_BUSINESS,
    "enterprise": identity_pb2.PLAN_TIER_ENTERPRISE,
}
_STATUSES = {
    "active": identity_pb2.CUSTOMER_STATUS_ACTIVE,
    "trialing": identity_pb2.CUSTOMER_STATUS_TRIALING,
    "past_due": identity_pb2.CUSTOMER_STATUS_PAST_DUE,
    "canceled": identity_pb2.CUSTOMER_STATUS_CANCELED,
}


def _bad_payload(message: str) -> errors.ServiceError:
    return errors.invalid_argument(errors.FieldViolation("payload", message))


def tags_request(
    workspace_id: str,
    customer_id: str,
    subscription: Json | None,
    *,
    source_time: datetime,
    idempotency_key: str,
) -> identity_pb2.UpdateTagsRequest:
    """The tags of the customer's contacts as this subscription (with its price's product
    expanded, when it is) shows them; no subscription tags the customer as having none."""
    subscription = subscription or {}
    status = billing.TAG_STATUS.get(str(subscription.get("status")), "")
    item = billing.first_item(subscription) or {}
    price = item.get("price") or {}
    product = price.get("product") if isinstance(price.get("product"), dict) else None
    tier = billing.tier_of(price, product) if subscription else ""
    request = identity_pb2.UpdateTagsRequest(
        workspace_id=workspace_id,
        stripe_customer_id=customer_id,
        customer_status=_STATUSES.get(status, identity_pb2.CUSTOMER_STATUS_UNSPECIFIED),
        plan_tier=_TIERS.get(tier, identity_pb2.PLAN_TIER_UNSPECIFIED),
        set_trial_ends=True,
        source_time=convert.timestamp(source_time),
        idempotency_key=idempotency_key,
    )
    if subscription.get("trial_end") and subscription.get("status") == "trialing":
        request.trial_ends.FromSeconds(int(subscription["trial_end"]))
    return request


class Ingestion:
    """IngestStripeEvent's work: verify against every signing secret, store, ack."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        accounts: AccountDirectory,
        tolerance_seconds: int,
        wall_time: Callable[[], float] = time.time,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._accounts = accounts
        self._tolerance = tolerance_seconds
        self._wall_time = wall_time
        # Wakes this replica's inbox workers (others find the event at their next poll).
        self._on_stored = on_stored

    async def ingest(self, workspace_id: str, payload: bytes, header: str) -> tuple[str, bool]:
        """(event id, duplicate) after the event is durably stored."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _bad_payload("payload too large")
        async with self._pool.acquire() as connection:
            # Read on every call: a secret added or retired on another replica counts at once.
            secrets = await self._accounts.signing_secrets(workspace_id, connection)
            try:
                signatures.verify(
                    payload,
                    header,
                    secrets,
                    now=self._wall_time(),
                    tolerance_seconds=self._tolerance,
                )
            except errors.ServiceError as refused:
                gateway_metrics.count_signature_failure(refused.reason)
                raise
            # Only the envelope is read here; the event is parsed fully by the worker.
            try:
                envelope = json.loads(payload)
                event_id = str(envelope["id"])
                event_type = str(envelope["type"])
                created = datetime.fromtimestamp(int(envelope["created"]), UTC)
            except (ValueError, KeyError, TypeError, RecursionError):
                # A signed payload nested too deeply is refused here, never stored for the
                # worker.
                raise _bad_payload("not a Stripe event") from None
            inserted = await inbox_store.insert_event(
                connection, workspace_id, event_id, event_type, created, payload
            )
        if inserted:
            self._on_stored()
        return event_id, not inserted
