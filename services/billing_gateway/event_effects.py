"""What one stored Stripe event does: the mirror, the ledger's writes a restore lost,
subscriptions' tags, and (recovery_effects.py) failed-payment recovery cases and messages. The
inbox worker (inbox.py) claims events in batches and applies each here.

Calls to identity and the notifier carry keys derived from the event (or invoice) id, so a
retry after a crash repeats nothing; when one of them is unreachable the event is deferred
with backoff. An event's local writes other than the mirror's come after its last call that
can fail, so a deferred event leaves only mirror versions behind (idempotent, newest wins).
The one exception is the failed-payment message an invoice's customer is told: decided once
and committed on its own before the notifier is asked (``inbox_store.PaymentFailedNotice``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from billing_gateway import (
    adopting,
    convert,
    inbox_store,
    mirror_reads,
)
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import adoption, billing
from billing_gateway.event_burst import Burst, EventMessages
from billing_gateway.mirror import Mirror
from billing_gateway.notices import Notices, display_date
from billing_gateway.peers import Peers
from billing_gateway.recovery_effects import RecoveryEffects
from billing_gateway.stripe_api import StripeGateway, retrieve_json
from billing_gateway.webhooks import tags_request
from runtime import errors

logger = logging.getLogger(__name__)

Json = dict[str, Any]


class EventEffects:
    """Applies one stored event: the mirror, subscriptions' tags, recovery cases, messages."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        peers: Peers,
        accounts: AccountDirectory,
        mirror: Mirror,
        *,
        recipients_cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._peers = peers
        self._accounts = accounts
        self._mirror = mirror
        self._messages = EventMessages(
            Notices(peers, accounts, gateway),
            mirror,
            recipients_cache_seconds=recipients_cache_seconds,
            monotonic=monotonic,
        )
        self._recovery = RecoveryEffects(pool, gateway, accounts, self._messages)

    async def apply(self, burst: Burst, event: inbox_store.StoredEvent, data: Json) -> list[str]:
        """Applies the event (``data``: its parsed payload); returns the effects that could
        not happen (recorded as the event's outcome), and raises ServiceError when the event
        must be tried again."""
        obj: Json = (data.get("data") or {}).get("object") or {}
        kind = event.event_type
        problems: list[str] = []
        # The mirror first, in the same transaction: processed means mirrored.
        async with burst.mirror_turn:
            fetched = await self._mirror.take_event(burst.connection, event, obj)
        performed = adoption.performed_in(kind, obj)
        if performed is not None:
            # In the event's transaction: processed means the ledger has the write.
            await adopting.adopt(burst.connection, event.workspace_id, performed)
        if kind.startswith("customer.subscription."):
            await self._subscription_changed(burst, event, obj, problems)
        elif kind == "invoice.payment_failed":
            await self._recovery.payment_failed(burst, event, obj, fetched, problems)
        elif kind in ("invoice.payment_succeeded", "invoice.paid"):
            await self._recovery.close_case(burst, event, obj, "recovered", "payment_succeeded")
        elif kind in ("invoice.voided", "invoice.marked_uncollectible"):
            await self._recovery.close_case(burst, event, obj, "lost", kind.split(".")[1])
        elif kind == "charge.refunded":
            await self._recovery.refunded(burst, event, obj, problems)
        # Any other type: acknowledged, ignored.
        return problems

    # -- subscriptions ---------------------------------------------------------------------

    async def _subscription_changed(
        self, burst: Burst, event: inbox_store.StoredEvent, obj: Json, problems: list[str]
    ) -> None:
        customer_id = billing.expandable_id(obj.get("customer"))
        subscription = obj
        from_stripe = False
        if event.event_type != "customer.subscription.deleted":
            # Events arrive in any order and several can share a second: the newest version
            # the mirror holds (it decides by Stripe's times, and has just taken this
            # event's), while it is fresh; else the object as Stripe holds it now.
            held = await mirror_reads.expanded_subscription(
                burst.connection,
                event.workspace_id,
                str(obj.get("id") or ""),
                await self._messages.freshness(burst, event.workspace_id),
                burst.now,
            )
            if held is not None:
                subscription = held
            else:
                found = await self._subscription_from_stripe(event.workspace_id, str(obj["id"]))
                if found is not None:
                    subscription, from_stripe = found, True
        replaced = str(
            (subscription.get("metadata") or {}).get(billing.REPLACES_METADATA_KEY) or ""
        )
        if replaced and subscription.get("status") == "active":
            # Ending another subscription is a money action: only on what Stripe says now.
            confirmed = (
                subscription
                if from_stripe
                else await self._subscription_from_stripe(event.workspace_id, str(obj["id"]))
            )
            if confirmed is not None and confirmed.get("status") == "active":
                really = str(
                    (confirmed.get("metadata") or {}).get(billing.REPLACES_METADATA_KEY) or ""
                )
                if really:
                    await self._end_replaced(
                        event,
                        billing.expandable_id(confirmed.get("customer")),
                        str(confirmed["id"]),
                        really,
                    )
        item = billing.first_item(subscription) or {}
        price = item.get("price") or {}
        product = price.get("product") if isinstance(price.get("product"), dict) else None
        await self._peers.update_tags(
            tags_request(
                event.workspace_id,
                customer_id,
                subscription,
                source_time=event.created_at,
                idempotency_key=f"stripe-event-{event.event_id}-tags",
            )
        )
        if event.event_type == "customer.subscription.deleted":
            ended = obj.get("ended_at") or obj.get("canceled_at")
            ended_at = convert.from_unix(int(ended)) if ended else event.created_at
            await self._messages.notify(
                burst,
                event,
                customer_id,
                notifier_pb2.TEMPLATE_OFFBOARDING,
                {
                    "plan_name": await self._product_name(event.workspace_id, price, product),
                    "ended_at": display_date(ended_at),
                },
                dedup=f"offboarding-{obj.get('id')}",
                problems=problems,
            )

    async def _subscription_from_stripe(
        self, workspace_id: str, subscription_id: str
    ) -> Json | None:
        """The subscription as Stripe holds it now, its price's product expanded; None when
        Stripe has no such subscription."""
        account = await self._accounts.account(workspace_id)
        try:
            return await retrieve_json(
                self._gateway,
                account,
                "subscriptions.retrieve",
                f"/v1/subscriptions/{quote(subscription_id, safe='')}",
                expand=["items.data.price.product"],
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return None

    async def _product_name(self, workspace_id: str, price: Json, product: Json | None) -> str:
        """The plan's name as Stripe holds its product ('' when Stripe has none)."""
        if product is not None:
            return str(product.get("name") or "")
        product_id = billing.expandable_id(price.get("product"))
        if not product_id.startswith("prod_") or len(product_id) > 255:
            return ""
        account = await self._accounts.account(workspace_id)
        try:
            found = await retrieve_json(
                self._gateway,
                account,
                "products.retrieve",
                f"/v1/products/{quote(product_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return ""
        return str(found.get("name") or "")

    async def _end_replaced(
        self, event: inbox_store.StoredEvent, customer_id: str, new_id: str, replaced_id: str
    ) -> None:
        """The subscription a resubscription replaces (StartResubscription, under the grant
        the person confirmed) ends at its period end, now that the new one is active; never
        another customer's, never twice."""
        account = await self._accounts.account(event.workspace_id)
        try:
            old = await retrieve_json(
                self._gateway,
                account,
                "subscriptions.retrieve",
                f"/v1/subscriptions/{quote(replaced_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is errors.Kind.NOT_FOUND:
                return
            raise
        if (
            billing.expandable_id(old.get("customer")) != customer_id
            or old.get("status") == "canceled"
            or old.get("cancel_at_period_end")
        ):
            return
        await self._gateway.call(
            account,
            "subscriptions.update",
            lambda c: c.v1.subscriptions.update_async(
                replaced_id,
                {"cancel_at_period_end": True},
                {"idempotency_key": f"askvault-replaced-by-{new_id}"},
            ),
        )
        logger.info(
            "replaced subscription ends at its period end",
            extra={"subscription_id": replaced_id, "replaced_by": new_id},
        )
