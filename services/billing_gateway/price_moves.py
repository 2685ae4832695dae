"""Which price a subscription may be moved to, checked at write time against Stripe's read.

Policy owns the workspace's self-serve prices and refuses, at Authorize and again at Redeem,
a move to a price the list does not name. When the workspace lists none, the default holds
here, where the authoritative objects are read before the write: the target price must be
active and recurring, in the currency of the subscription's current price and billed at the
same interval (as Stripe's Customer Portal offers by default). Active, recurring and the same
currency hold for a listed price too: an archived price is no plan to move to, and a
subscription keeps its currency.
"""

from __future__ import annotations

from typing import Any

from runtime import errors

Json = dict[str, Any]

REASON = "PRICE_NOT_SWITCHABLE"


def _interval(price: Json) -> tuple[str, int]:
    recurring = price.get("recurring") or {}
    return str(recurring.get("interval") or ""), int(recurring.get("interval_count") or 1)


def problem(target: Json, current: Json | None, *, listed: bool) -> str:
    """What keeps the customer from moving by themselves from ``current`` (the subscription's
    price as just read from Stripe) to ``target`` (read from Stripe too); "" when nothing
    does. ``listed``: the workspace lists self-serve prices (policy checked the list), so
    another billing interval is allowed."""
    if not target.get("active", False):
        return "the price is not active"
    if not target.get("recurring"):
        return "the price is not recurring"
    if current is None:
        return "the subscription has no current price to compare with"
    if str(target.get("currency") or "") != str(current.get("currency") or ""):
        return "the price is in another currency than the subscription"
    if not listed and _interval(target) != _interval(current):
        return "the price is billed at another interval than the subscription"
    return ""


def check(target: Json, current: Json | None, *, listed: bool) -> None:
    """Refuses the move with FAILED_PRECONDITION PRICE_NOT_SWITCHABLE when ``problem`` names
    one (nothing has been written yet)."""
    found = problem(target, current, listed=listed)
    if found:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            REASON,
            found,
            metadata={"target_price_id": str(target.get("id") or "")},
        )
