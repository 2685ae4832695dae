"""Reads answered from the mirror. Each answers None when the mirror may not answer: the
backfill is not done, an object is missing, or something it would use was last confirmed by
Stripe longer ago than the workspace's freshness bound. The caller then asks Stripe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing_gateway import mirror_store
from billing_gateway.domain import billing, mirroring
from billing_gateway.mirror import Freshness
from runtime.database import Connection

Json = dict[str, Any]


class _Miss(Exception):
    """The mirror cannot answer this read."""


class _Reader:
    """Uses held objects, remembering the oldest confirmation among them."""

    def __init__(
        self, connection: Connection, workspace_id: str, freshness: Freshness, now: datetime
    ) -> None:
        self.connection = connection
        self.workspace_id = workspace_id
        self.freshness = freshness
        self.now = now
        self.as_of: datetime | None = None

    def use(self, found: mirror_store.MirroredObject | None) -> Json:
        if found is None or found.deleted:
            raise _Miss
        if not self.freshness.fresh(found.confirmed_at, self.now):
            raise _Miss
        as_of = self.freshness.as_of(found.confirmed_at)
        if self.as_of is None or as_of < self.as_of:
            self.as_of = as_of
        return found.data

    async def get(self, object_type: str, object_id: str) -> Json:
        if not object_id:
            raise _Miss
        return self.use(
            await mirror_store.get_mirrored(
                self.connection, self.workspace_id, object_type, object_id
            )
        )

    def oldest(self) -> datetime:
        return self.as_of if self.as_of is not None else self.now


@dataclass(frozen=True)
class SubscriptionParts:
    """What GetSubscription shows, as the mirror holds it."""

    subscription: Json | None
    count: int
    price: Json | None
    product: Json | None
    payment_method: Json | None
    latest_invoice: Json | None
    as_of: datetime


async def subscription(
    connection: Connection,
    workspace_id: str,
    customer_id: str,
    subscription_id: str,
    freshness: Freshness,
    now: datetime,
) -> SubscriptionParts | None:
    """The customer's chosen subscription (by id, or the most relevant) with its price,
    product, payment method and latest invoice."""
    if not freshness.complete:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    try:
        if not customer_id:
            raise _Miss
        held_customer, rows = await mirror_store.customer_and_objects(
            connection, workspace_id, customer_id, mirroring.SUBSCRIPTION
        )
        customer = reader.use(held_customer)
        subscriptions = [reader.use(row) for row in rows]
        if subscription_id:
            chosen = next((s for s in subscriptions if s.get("id") == subscription_id), None)
            if chosen is None:
                raise _Miss
        else:
            picked = billing.pick_subscription(subscriptions)
            chosen = dict(picked) if picked is not None else None
        if chosen is None:
            return SubscriptionParts(None, 0, None, None, None, None, reader.oldest())
        item = billing.first_item(chosen) or {}
        price = item.get("price") or None
        product_id = billing.expandable_id((price or {}).get("product"))
        method_id = billing.expandable_id(chosen.get("default_payment_method")) or (
            billing.expandable_id(
                (customer.get("invoice_settings") or {}).get("default_payment_method")
            )
        )
        latest_id = billing.expandable_id(chosen.get("latest_invoice"))
        wanted = [
            (object_type, object_id)
            for object_type, object_id in (
                (mirroring.PRODUCT, product_id),
                (mirroring.PAYMENT_METHOD, method_id),
                (mirroring.INVOICE, latest_id),
            )
            if object_id
        ]
        held = await mirror_store.get_mirrored_many(connection, workspace_id, wanted)
        product = reader.use(held.get((mirroring.PRODUCT, product_id))) if product_id else None
        method = reader.use(held.get((mirroring.PAYMENT_METHOD, method_id))) if method_id else None
        latest = reader.use(held.get((mirroring.INVOICE, latest_id))) if latest_id else None
    except _Miss:
        return None
    return SubscriptionParts(
        chosen, len(subscriptions), price, product, method, latest, reader.oldest()
    )


@dataclass(frozen=True)
class Page:
    """A page of a customer's objects, newest first."""

    objects: list[Json]
    has_more: bool
    as_of: datetime


async def customer_objects(
    connection: Connection,
    workspace_id: str,
    object_type: str,
    customer_id: str,
    query: mirror_store.MirrorQuery,
    page_token: str,
    freshness: Freshness,
    now: datetime,
) -> Page | None:
    """A page of the customer's invoices or charges; ``page_token`` is the id of the last
    object of the previous page (as Stripe's starting_after)."""
    if not freshness.complete:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    try:
        await reader.get(mirroring.CUSTOMER, customer_id)
        after = None
        if page_token:
            last = await mirror_store.get_mirrored(
                connection, workspace_id, object_type, page_token
            )
            if last is None or last.customer_id != customer_id:
                raise _Miss
            after = (int(last.data.get("created") or 0), last.object_id)
        rows = await mirror_store.mirrored_of_customer(
            connection,
            workspace_id,
            object_type,
            customer_id,
            mirror_store.MirrorQuery(
                created_gte=query.created_gte,
                created_lt=query.created_lt,
                status=query.status,
                after=after,
                limit=query.limit + 1,
            ),
        )
        objects = [reader.use(row) for row in rows[: query.limit]]
    except _Miss:
        return None
    return Page(objects, len(rows) > query.limit, reader.oldest())


async def charge(
    connection: Connection,
    workspace_id: str,
    charge_id: str,
    customer_id: str,
    freshness: Freshness,
    now: datetime,
) -> tuple[Json, datetime] | None:
    """One of the customer's charges and when it was last confirmed; None when the mirror
    may not answer (missing, deleted, stale) or holds it for another customer (the caller
    then asks Stripe, which answers NOT_FOUND for another customer's charge all the same)."""
    reader = _Reader(connection, workspace_id, freshness, now)
    try:
        found = await reader.get(mirroring.CHARGE, charge_id)
    except _Miss:
        return None
    if billing.expandable_id(found.get("customer")) != customer_id:
        return None
    return found, reader.oldest()


@dataclass(frozen=True)
class Catalog:
    """The active recurring prices in the mirror, each with its product."""

    plans: list[tuple[Json, Json | None]]
    as_of: datetime


async def catalog(
    connection: Connection, workspace_id: str, currency: str, freshness: Freshness, now: datetime
) -> Catalog | None:
    """Active recurring prices (in one currency when asked) of active products."""
    if not freshness.complete:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    plans: list[tuple[Json, Json | None]] = []
    try:
        for row in await mirror_store.mirrored_of_type(connection, workspace_id, mirroring.PRICE):
            price = row.data
            if not price.get("active", True) or not price.get("recurring"):
                continue
            if currency and price.get("currency") != currency:
                continue
            reader.use(row)
            product_id = billing.expandable_id(price.get("product"))
            product = await reader.get(mirroring.PRODUCT, product_id) if product_id else None
            if product is not None and not product.get("active", True):
                continue
            plans.append((price, product))
    except _Miss:
        return None
    return Catalog(plans, reader.oldest())


@dataclass(frozen=True)
class Customers:
    """Customers the mirror holds that match a query."""

    customers: list[Json]
    as_of: datetime


async def customers(
    connection: Connection,
    workspace_id: str,
    *,
    customer_id: str = "",
    email: str = "",
    metadata: tuple[str, str] | None = None,
    freshness: Freshness,
    now: datetime,
) -> Customers | None:
    """Customers by id, by email (case-insensitive) or by a metadata value. None (ask
    Stripe) when none is held: a customer created a moment ago may not be here yet."""
    if not freshness.complete:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    if customer_id:
        found = await mirror_store.get_mirrored(
            connection, workspace_id, mirroring.CUSTOMER, customer_id
        )
        rows = [found] if found is not None and not found.deleted else []
    elif metadata is not None:
        rows = await mirror_store.customers_by_metadata(connection, workspace_id, *metadata)
    else:
        rows = await mirror_store.customers_by_email(connection, workspace_id, email)
    if not rows:
        return None
    try:
        held = [reader.use(row) for row in rows]
    except _Miss:
        return None
    return Customers(held, reader.oldest())


async def price(
    connection: Connection, workspace_id: str, price_id: str, freshness: Freshness, now: datetime
) -> tuple[Json, Json | None] | None:
    """An active recurring price with its product, or None (ask Stripe: it says NOT_FOUND)."""
    if not freshness.complete or not price_id:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    try:
        held = await reader.get(mirroring.PRICE, price_id)
        if not held.get("active", True) or not held.get("recurring"):
            return None
        product_id = billing.expandable_id(held.get("product"))
        product = await reader.get(mirroring.PRODUCT, product_id) if product_id else None
    except _Miss:
        return None
    return held, product


async def expanded_subscription(
    connection: Connection,
    workspace_id: str,
    subscription_id: str,
    freshness: Freshness,
    now: datetime,
) -> Json | None:
    """A subscription with its first item's price's product expanded (as the webhook worker
    reads it from Stripe), or None when the mirror may not answer."""
    if not freshness.complete or not subscription_id:
        return None
    reader = _Reader(connection, workspace_id, freshness, now)
    try:
        held = await reader.get(mirroring.SUBSCRIPTION, subscription_id)
        items = held.get("items") or {}
        data = list(items.get("data") or [])
        if not data:
            return held
        first = data[0]
        price = first.get("price") or {}
        product_id = billing.expandable_id(price.get("product"))
        if not product_id:
            return held
        product = await reader.get(mirroring.PRODUCT, product_id)
    except _Miss:
        return None
    expanded = {**first, "price": {**price, "product": product}}
    return {**held, "items": {**items, "data": [expanded, *data[1:]]}}


async def customer_email(
    connection: Connection, workspace_id: str, customer_id: str, freshness: Freshness, now: datetime
) -> str | None:
    """The customer's email ('' when it has none), or None when the mirror may not answer."""
    found = await customers(
        connection, workspace_id, customer_id=customer_id, freshness=freshness, now=now
    )
    if found is None or not found.customers:
        return None
    return str(found.customers[0].get("email") or "")
