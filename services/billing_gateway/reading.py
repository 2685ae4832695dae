"""The customer's Stripe objects as the gateway's reads and writes use them: read from
Stripe (a customer's object that is someone else's is NOT_FOUND, and what Stripe answers goes
into the mirror too) or from the mirror when it holds them fresh, and shown as the contract
shows them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import convert, mirror_reads, mirror_store, operation_store, price_moves
from billing_gateway.domain import billing, mirroring
from billing_gateway.ledger import Clock
from billing_gateway.mirror import Mirror
from billing_gateway.peers import Peers
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import errors

Json = dict[str, Any]


@dataclass(frozen=True)
class CustomerObjects:
    """Reads a workspace's Stripe objects, from the mirror or from Stripe."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _mirror: Mirror
    _peers: Peers
    _clock: Clock

    async def retrieve(
        self, account: StripeAccount, kind: str, object_id: str, customer_id: str, **params: Any
    ) -> Json:
        """An object of the customer; another customer's (or none) is NOT_FOUND, no data."""
        if not object_id or len(object_id) > 255:
            raise errors.not_found(kind)
        options: Any = params or None

        def retrieve(c: Any) -> Any:
            service = {
                "subscription": c.v1.subscriptions,
                "charge": c.v1.charges,
                "invoice": c.v1.invoices,
            }[kind]
            return service.retrieve_async(object_id, options)

        raw = await self._stripe.call(account, f"{kind}s.retrieve", retrieve)
        found = to_json(raw)
        if billing.expandable_id(found.get("customer")) != customer_id:
            raise errors.not_found(kind)
        # What Stripe just answered is the newest version: the mirror takes it too.
        await self._mirror.take_read(account.workspace_id, [found], raw)
        return found

    async def product(self, account: StripeAccount, price: Json) -> Json | None:
        product = price.get("product")
        if isinstance(product, dict):
            return product
        if not product:
            return None
        raw = await self._stripe.call(
            account, "products.retrieve", lambda c: c.v1.products.retrieve_async(str(product))
        )
        await self._mirror.take_read(account.workspace_id, [to_json(raw)], raw)
        return to_json(raw)

    async def payment_method(
        self, account: StripeAccount, subscription: Json, customer_id: str
    ) -> Json | None:
        method = subscription.get("default_payment_method")
        if isinstance(method, dict):
            return method
        if not method:
            raw_customer = await self._stripe.call(
                account,
                "customers.retrieve",
                lambda c: c.v1.customers.retrieve_async(
                    customer_id, {"expand": ["invoice_settings.default_payment_method"]}
                ),
            )
            customer = to_json(raw_customer)
            await self._mirror.take_read(account.workspace_id, [customer], raw_customer)
            found = (customer.get("invoice_settings") or {}).get("default_payment_method")
            return found if isinstance(found, dict) else None
        raw = await self._stripe.call(
            account,
            "payment_methods.retrieve",
            lambda c: c.v1.payment_methods.retrieve_async(str(method)),
        )
        await self._mirror.take_read(account.workspace_id, [to_json(raw)], raw)
        return to_json(raw)

    async def subscription_pb(
        self, account: StripeAccount, workspace_id: str, customer_id: str, subscription_id: str
    ) -> tuple[pb.Subscription, Json, Json | None]:
        """The subscription as the contract shows it, with its raw form and product."""
        sub = await self.retrieve(
            account,
            "subscription",
            subscription_id,
            customer_id,
            expand=["default_payment_method", "latest_invoice", "items.data.price.product"],
        )
        item = billing.first_item(sub) or {}
        price = item.get("price") or None
        product = await self.product(account, price) if price else None
        method = await self.payment_method(account, sub, customer_id)
        latest = sub.get("latest_invoice") if isinstance(sub.get("latest_invoice"), dict) else None
        message = await self.subscription_message(
            workspace_id, customer_id, sub, price, product, method, latest
        )
        return message, sub, product

    async def subscription_message(
        self,
        workspace_id: str,
        customer_id: str,
        sub: Json,
        price: Json | None,
        product: Json | None,
        method: Json | None,
        latest: Json | None,
    ) -> pb.Subscription:
        message = convert.subscription(
            sub,
            price=price,
            product=product,
            payment_method=method,
            latest_invoice=latest,
            in_place=billing.plan_change_in_place(sub, method),
        )
        async with self._pool.acquire() as connection:
            pending = await operation_store.pending_cancellation(
                connection, workspace_id, customer_id, str(sub["id"])
            )
        if pending is not None:
            message.scheduled_cancellation.CopyFrom(convert.operation(pending))
        return message

    def from_stripe(self) -> pb.ReadOrigin:
        return pb.ReadOrigin(source=pb.READ_SOURCE_STRIPE, as_of=convert.timestamp(self._clock()))

    @staticmethod
    def from_mirror(as_of: datetime) -> pb.ReadOrigin:
        return pb.ReadOrigin(source=pb.READ_SOURCE_MIRROR, as_of=convert.timestamp(as_of))

    async def subscription_from_mirror(
        self, workspace_id: str, customer_id: str, subscription_id: str
    ) -> pb.GetSubscriptionResponse | None:
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            parts = await mirror_reads.subscription(
                connection, workspace_id, customer_id, subscription_id, freshness, self._clock()
            )
        if parts is None:
            return None
        origin = self.from_mirror(parts.as_of)
        if parts.subscription is None:
            return pb.GetSubscriptionResponse(subscription_count=0, origin=origin)
        message = await self.subscription_message(
            workspace_id,
            customer_id,
            parts.subscription,
            parts.price,
            parts.product,
            parts.payment_method,
            parts.latest_invoice,
        )
        upcoming = mirroring.next_invoice_amount(parts.subscription)
        if upcoming is not None:
            message.next_invoice_amount.CopyFrom(convert.money(*upcoming))
        return pb.GetSubscriptionResponse(
            subscription=message, subscription_count=parts.count, origin=origin
        )

    async def customer_page(
        self,
        workspace_id: str,
        object_type: str,
        customer_id: str,
        query: mirror_store.MirrorQuery,
        page_token: str,
    ) -> mirror_reads.Page | None:
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            return await mirror_reads.customer_objects(
                connection,
                workspace_id,
                object_type,
                customer_id,
                query,
                page_token,
                freshness,
                self._clock(),
            )

    async def charges(
        self, account: StripeAccount, customer_id: str, params: Json, page_token: str = ""
    ) -> tuple[list[Json], bool, pb.ReadOrigin]:
        """A page of the customer's charges: from the mirror, or from Stripe."""
        created = params.get("created") or {}
        page = await self.customer_page(
            account.workspace_id,
            mirroring.CHARGE,
            customer_id,
            mirror_store.MirrorQuery(created_gte=created.get("gte"), limit=int(params["limit"])),
            page_token,
        )
        if page is not None:
            return page.objects, page.has_more, self.from_mirror(page.as_of)
        query: Any = {"customer": customer_id, **params}
        if page_token:
            query["starting_after"] = page_token
        listed = await self._stripe.call(
            account, "charges.list", lambda c: c.v1.charges.list_async(query)
        )
        charges = [to_json(charge) for charge in listed.data]
        await self._mirror.take_read(account.workspace_id, charges, listed)
        return charges, bool(listed.has_more), self.from_stripe()

    async def price(
        self, account: StripeAccount, price_id: str, usable_only: bool = True
    ) -> tuple[Json, Json | None]:
        if not price_id or len(price_id) > 255:
            raise errors.not_found("price")
        raw = await self._stripe.call(
            account,
            "prices.retrieve",
            lambda c: c.v1.prices.retrieve_async(price_id, {"expand": ["product"]}),
        )
        price = to_json(raw)
        await self._mirror.take_read(account.workspace_id, [price], raw)
        if usable_only and (not price.get("active", True) or not price.get("recurring")):
            raise errors.not_found("price")
        return price, await self.product(account, price)

    async def switchable(
        self, account: StripeAccount, sub: Json, price_id: str
    ) -> tuple[Json, Json | None]:
        """The target price and its product, once price_moves lets the subscription move to
        it."""
        target, product = await self.price(account, price_id, usable_only=False)
        listed = await self._peers.self_serve_price_ids(account.workspace_id)
        price_moves.check(target, (billing.first_item(sub) or {}).get("price"), listed=bool(listed))
        return target, product

    async def current_from_mirror(
        self, workspace_id: str, customer_id: str, subscription_id: str
    ) -> tuple[pb.Subscription, Json] | None:
        """The subscription a plan change would apply to, from the mirror (None: ask Stripe)."""
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            parts = await mirror_reads.subscription(
                connection, workspace_id, customer_id, subscription_id, freshness, self._clock()
            )
        if parts is None or parts.subscription is None:
            return None
        if not subscription_id and parts.subscription.get("status") in mirroring.ENDED:
            # As Stripe's default list: an ended subscription is not the current one.
            return None
        message = await self.subscription_message(
            workspace_id,
            customer_id,
            parts.subscription,
            parts.price,
            parts.product,
            parts.payment_method,
            parts.latest_invoice,
        )
        return message, parts.subscription

    async def target_price(self, account: StripeAccount, price_id: str) -> tuple[Json, Json | None]:
        """An active recurring price and its product: from the mirror, else from Stripe."""
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, account.workspace_id)
            held = await mirror_reads.price(
                connection, account.workspace_id, price_id, freshness, self._clock()
            )
        if held is not None:
            return held
        return await self.price(account, price_id)

    async def current_subscription_id(
        self, account: StripeAccount, customer_id: str, subscription_id: str
    ) -> str:
        if subscription_id:
            return subscription_id
        listed = await self._stripe.call(
            account,
            "subscriptions.list",
            lambda c: c.v1.subscriptions.list_async({"customer": customer_id, "limit": 100}),
        )
        chosen = billing.pick_subscription([to_json(sub) for sub in listed.data])
        if chosen is None:
            raise errors.not_found("subscription")
        return str(chosen["id"])
