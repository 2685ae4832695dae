"""Rules over Stripe objects (plain dicts as Stripe returns them): duplicates, features,
whether a plan can change in place, how statuses and tiers become audience tags."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import currency as currency_units

Json = Mapping[str, Any]

# Stripe subscription status -> identity's customer_status tag ("" leaves it unchanged).
TAG_STATUS = {
    "active": "active",
    "trialing": "trialing",
    "past_due": "past_due",
    "unpaid": "past_due",
    "canceled": "canceled",
    "incomplete_expired": "canceled",
}
# Subscription statuses in order of relevance when the caller names none.
_STATUS_RANK = {
    "active": 0,
    "trialing": 1,
    "past_due": 2,
    "unpaid": 3,
    "paused": 4,
    "incomplete": 5,
    "canceled": 6,
    "incomplete_expired": 7,
}


def pick_subscription(subscriptions: Sequence[Json]) -> Json | None:
    """The most relevant subscription: live ones before ended ones, newest first."""
    if not subscriptions:
        return None
    return min(
        subscriptions,
        key=lambda sub: (_STATUS_RANK.get(str(sub.get("status")), 9), -int(sub.get("created", 0))),
    )


def first_item(subscription: Json) -> Json | None:
    """The subscription's first item (the skill's plans are single-item subscriptions)."""
    items = (subscription.get("items") or {}).get("data") or []
    return items[0] if items else None


def expandable_id(value: Any) -> str:
    """The id of a field Stripe may return as an id or as the expanded object."""
    if isinstance(value, Mapping):
        return str(value.get("id") or "")
    return str(value or "")


def features_of(product: Json | None) -> list[str]:
    """The product's marketing feature names."""
    if not product:
        return []
    return [str(f.get("name")) for f in product.get("marketing_features") or [] if f.get("name")]


def features_diff(current: Sequence[str], target: Sequence[str]) -> tuple[list[str], list[str]]:
    """(gained, lost), each in the order the products list them."""
    gained = [feature for feature in target if feature not in current]
    lost = [feature for feature in current if feature not in target]
    return gained, lost


def tier_of(price: Json | None, product: Json | None) -> str:
    """The tier from the product's (or the price's) metadata "tier"."""
    for source in (product, price):
        if source:
            tier = (source.get("metadata") or {}).get("tier")
            if tier:
                return str(tier).lower()
    return ""


# The metadata key under which a subscription started by StartResubscription names the one it
# replaces: that one is set to cancel at its period end once the new one is active.
REPLACES_METADATA_KEY = "askvault_replaces_subscription"


def plan_change_in_place(
    subscription: Json, payment_method: Json | None, mandate: Json | None = None
) -> bool:
    """False when the subscription is paid by UPI or under an Indian eMandate: those
    mandates fix the amount, so a new price needs a new subscription (and mandate)."""
    if payment_method and payment_method.get("type") == "upi":
        return False
    if mandate:
        details = mandate.get("payment_method_details") or {}
        if details.get("type") == "upi":
            return False
        card = details.get("card") or {}
        if card.get("mandate_options") or card.get("network") == "rupay":
            return False
    options = (subscription.get("payment_settings") or {}).get("payment_method_options") or {}
    card_options = options.get("card") or {}
    if card_options.get("mandate_options"):
        return False
    types = (subscription.get("payment_settings") or {}).get("payment_method_types") or []
    return "upi" not in types


@dataclass(frozen=True)
class ChargeFacts:
    """What duplicate detection needs of a charge."""

    charge_id: str
    amount: int
    currency: str
    created: int
    captured: bool
    refunded: bool
    amount_refunded: int
    status: str


def charge_facts(charge: Json) -> ChargeFacts:
    """The facts of a Stripe charge."""
    return ChargeFacts(
        charge_id=str(charge["id"]),
        amount=int(charge.get("amount") or 0),
        currency=str(charge.get("currency") or ""),
        created=int(charge.get("created") or 0),
        captured=bool(charge.get("captured")),
        refunded=bool(charge.get("refunded")),
        amount_refunded=int(charge.get("amount_refunded") or 0),
        status=str(charge.get("status") or ""),
    )


def find_duplicates(charges: Iterable[ChargeFacts], window_seconds: int) -> list[tuple[str, str]]:
    """(original id, duplicate id) pairs, newest first: same amount and currency, within the
    window, both succeeded, captured and not refunded at all. Each charge is in one pair at
    most, so three identical charges give one pair plus a lone third."""
    eligible = sorted(
        (
            charge
            for charge in charges
            if charge.captured
            and charge.status == "succeeded"
            and not charge.refunded
            and charge.amount_refunded == 0
        ),
        key=lambda charge: (charge.created, charge.charge_id),
    )
    used: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for index, original in enumerate(eligible):
        if original.charge_id in used:
            continue
        for later in eligible[index + 1 :]:
            if later.created - original.created > window_seconds:
                break
            if (
                later.charge_id not in used
                and later.amount == original.amount
                and later.currency == original.currency
            ):
                used.update((original.charge_id, later.charge_id))
                pairs.append((original.charge_id, later.charge_id))
                break
    pairs.reverse()
    return pairs


def proration_amount(preview_invoice: Json) -> int:
    """The sum of the proration lines of an invoice preview."""
    total = 0
    for line in (preview_invoice.get("lines") or {}).get("data") or []:
        parent = line.get("parent") or {}
        details = parent.get("subscription_item_details") or parent.get("invoice_item_details")
        prorated = bool(line.get("proration")) or bool(details and details.get("proration"))
        if prorated:
            total += int(line.get("amount") or 0)
    return total


def display_amount(amount_minor: int, currency: str) -> str:
    """An amount as a message shows it: "49.00 USD", "1200 JPY", "1.234 KWD" (minus sign kept)."""
    number = currency_units.number(amount_minor, currency, grouped=False, drop_zero_decimals=False)
    return f"{number} {currency.upper()}"
