"""The rules of the gateway's mirror of Stripe, without I/O: which version of an object wins,
which objects are in a final state, what of an object is kept.

Stripe's timestamps have one-second precision: two versions stamped with the same second
cannot be ordered by time. When they differ and neither is final, the object is read again
from Stripe (a refetch); a version in a final state (a canceled subscription, a void invoice)
cannot be followed by another, so it wins without a refetch.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from billing_gateway.domain import billing

Json = dict[str, Any]

# Stripe object names the mirror keeps, and the list each is backfilled from.
CUSTOMER = "customer"
SUBSCRIPTION = "subscription"
PRODUCT = "product"
PRICE = "price"
INVOICE = "invoice"
CHARGE = "charge"
REFUND = "refund"
PAYMENT_METHOD = "payment_method"
MIRRORED = frozenset(
    {CUSTOMER, SUBSCRIPTION, PRODUCT, PRICE, INVOICE, CHARGE, REFUND, PAYMENT_METHOD}
)

# Backfill order: the catalog first, then customers, then what hangs off them. Payment
# methods come embedded in customers and subscriptions (expanded), not from a list of their own.
BACKFILL_TYPES = (
    "products",
    "prices",
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "refunds",
)

# Objects a `*.deleted` event removes (a subscription's deleted event reports it canceled).
DELETABLE = frozenset({CUSTOMER, PRODUCT, PRICE, INVOICE})

# Subscription statuses Stripe's default list leaves out.
ENDED = frozenset({"canceled", "incomplete_expired"})

# Event type prefixes whose data object the mirror takes in (`customer.` also covers
# `customer.subscription.`; the object's own `object` field says which it is).
EVENT_PREFIXES = (
    "customer.",
    "product.",
    "price.",
    "invoice.",
    "charge.",
    "refund.",
    "payment_method.",
)

# Object fields holding a Unix time at which the object changed: the newest is the latest
# time the object's own data vouches for.
_CHANGE_TIMES = ("created", "canceled_at", "ended_at", "start_date", "finalized_at")
_TRANSITIONS = ("finalized_at", "paid_at", "voided_at", "marked_uncollectible_at")


class Decision(enum.Enum):
    """What to do with an incoming version of an object."""

    STORE = "store"  # newer than what is held (or nothing is held): replace
    CONFIRM = "confirm"  # the same data: only the confirmation time moves on
    IGNORE = "ignore"  # older than what is held
    REFETCH = "refetch"  # same second, different data, neither final: ask Stripe


@dataclass(frozen=True)
class Held:
    """What the mirror holds of an object (only what deciding needs)."""

    version_time: int
    data: Json
    deleted: bool


def is_mirrored_event(event_type: str) -> bool:
    """Whether the event's data object is one the mirror keeps."""
    return event_type.startswith(EVENT_PREFIXES)


def object_time(obj: Mapping[str, Any]) -> int:
    """The latest Unix time the object's own fields record a change at."""
    times = [obj.get(name) for name in _CHANGE_TIMES]
    transitions = obj.get("status_transitions")
    if isinstance(transitions, Mapping):
        times.extend(transitions.get(name) for name in _TRANSITIONS)
    return max((int(value) for value in times if isinstance(value, int | float)), default=0)


def is_final(object_type: str, obj: Mapping[str, Any], deleted: bool = False) -> bool:
    """Whether no later version of the object can exist (so it needs no refetch)."""
    if deleted or obj.get("deleted"):
        return True
    status = str(obj.get("status") or "")
    if object_type == SUBSCRIPTION:
        return status in ("canceled", "incomplete_expired")
    if object_type == INVOICE:
        return status in ("paid", "void")
    if object_type == CHARGE:
        return status == "failed" or bool(obj.get("refunded"))
    if object_type == REFUND:
        return status in ("succeeded", "failed", "canceled")
    return False


def decide(object_type: str, held: Held | None, incoming: Json, incoming_time: int) -> Decision:
    """Which version wins: by time, never by arrival; a tie of different data is refetched,
    unless one side is final (a final version cannot be followed by another)."""
    if held is None:
        return Decision.STORE
    if incoming_time > held.version_time:
        return Decision.STORE
    if incoming_time < held.version_time:
        return Decision.IGNORE
    if comparable(held.data) == comparable(incoming) and held.deleted == bool(
        incoming.get("deleted")
    ):
        return Decision.CONFIRM
    if is_final(object_type, held.data, held.deleted):
        return Decision.IGNORE
    if is_final(object_type, incoming):
        return Decision.STORE
    return Decision.REFETCH


def comparable(obj: Mapping[str, Any]) -> Json:
    """The object's data without the mirror's own deletion mark (compared on its own)."""
    return {key: value for key, value in obj.items() if key != "deleted"}


def customer_of(object_type: str, obj: Mapping[str, Any]) -> str:
    """The Stripe customer an object belongs to ('' for the catalog)."""
    if object_type == CUSTOMER:
        return str(obj.get("id") or "")
    return billing.expandable_id(obj.get("customer"))


def trimmed_payment_method(method: Mapping[str, Any]) -> Json:
    """What the mirror keeps of a payment method: its type, and of a card its brand and
    last 4 only (never expiry, fingerprint or billing details)."""
    card = method.get("card") or {}
    kept: Json = {
        "id": method.get("id"),
        "object": PAYMENT_METHOD,
        "type": method.get("type"),
        "customer": billing.expandable_id(method.get("customer")) or None,
        "created": method.get("created"),
    }
    if card:
        kept["card"] = {"brand": card.get("brand"), "last4": card.get("last4")}
    return kept


def split_embedded(object_type: str, obj: Json) -> tuple[Json, list[Json]]:
    """The object as the mirror keeps it (expanded objects replaced by their ids, a payment
    method trimmed) and the expanded objects, each to be kept on its own."""
    embedded: list[Json] = []

    def pull(value: Any) -> Any:
        if isinstance(value, dict) and value.get("object") in MIRRORED and value.get("id"):
            embedded.append(value)
            return value["id"]
        return value

    if object_type == CUSTOMER and isinstance(obj.get("invoice_settings"), dict):
        settings = obj["invoice_settings"]
        method = pull(settings.get("default_payment_method"))
        obj = {**obj, "invoice_settings": {**settings, "default_payment_method": method}}
    elif object_type == SUBSCRIPTION:
        obj = {
            **obj,
            "default_payment_method": pull(obj.get("default_payment_method")),
            "latest_invoice": pull(obj.get("latest_invoice")),
        }
        items = obj.get("items")
        if isinstance(items, dict):
            data = []
            for item in items.get("data") or []:
                price = item.get("price")
                if isinstance(price, dict):
                    item = {**item, "price": {**price, "product": pull(price.get("product"))}}
                data.append(item)
            obj["items"] = {**items, "data": data}
    elif object_type == PRICE:
        obj = {**obj, "product": pull(obj.get("product"))}
    elif object_type == REFUND:
        obj = {**obj, "charge": pull(obj.get("charge"))}
    elif object_type == PAYMENT_METHOD:
        obj = trimmed_payment_method(obj)
    return obj, embedded


# Hosts Stripe serves an invoice's hosted page and PDF from.
STRIPE_LINK_HOSTS = frozenset({"invoice.stripe.com", "pay.stripe.com"})


def links_trusted(object_type: str, obj: Mapping[str, Any], hosts: frozenset[str]) -> bool:
    """Whether an invoice's links point at Stripe. A payload signed with a leaked webhook
    secret must not put its own link in front of a customer: such a version is not taken
    from the payload but read from Stripe."""
    if object_type != INVOICE:
        return True
    for field in ("hosted_invoice_url", "invoice_pdf"):
        link = obj.get(field)
        if link and urlsplit(str(link)).hostname not in hosts:
            return False
    return True


def next_invoice_amount(subscription: Mapping[str, Any]) -> tuple[int, str] | None:
    """The next regular invoice's amount from the subscription's items (unit amount times
    quantity); None for an ended subscription. Pending prorations are not included: they
    appear on the invoice Stripe finalizes."""
    if subscription.get("status") not in ("active", "trialing", "past_due"):
        return None
    items = (subscription.get("items") or {}).get("data") or []
    total = 0
    currency = str(subscription.get("currency") or "")
    for item in items:
        price = item.get("price") or {}
        total += int(price.get("unit_amount") or 0) * int(item.get("quantity") or 1)
        currency = currency or str(price.get("currency") or "")
    if subscription.get("cancel_at_period_end") or subscription.get("pause_collection"):
        total = 0
    return total, currency
