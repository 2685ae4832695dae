"""Bounds: a workspace's hard limits, their defaults, and which changes need two admins.

Decisions worth knowing:

- A change is compared with the *defaults*, not with the bounds in force: anything looser
  than a default needs a second admin every time it is proposed, so one admin alone can
  never move a workspace past the defaults, however many steps they take.
- A refund cap in a currency that has no default cap is a loosening (without a cap, refunds
  in that currency escalate to a human), so adding one needs a second admin. Removing a cap
  or lowering one is a tightening.
- A shorter counter period (day or week instead of month) resets more often and lets more
  through per month, so it is a loosening too.
- The self-serve prices are compared with the list in force (as the time zone is): an empty
  list lets the billing gateway's default through (any active recurring price in the
  customer's currency and interval), so emptying a list, or allowing a price it did not
  allow, needs a second admin; narrowing it does not.
- Resubscriptions (UPI / eMandate moves by a new subscription) have their own limit, apart
  from plan changes: above its default is a loosening.
- The AskVault plan is an account fact, not a safety bound: one admin may set it (the local
  stack seeds the demo workspace this way). In production it would come from AskVault's own
  billing.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from policy.domain.model import Money
from policy.domain.periods import LENGTH_ORDER, Period, valid_time_zone
from runtime import currency, errors

_CURRENCY = re.compile(r"^[a-z]{3}$")
MAX_REFUND_WINDOW = timedelta(days=365)
MAX_CANCELLATION_GRACE = timedelta(days=30)
MAX_PLAN_CHANGES = 1000
MAX_SELF_SERVE_PRICES = 50
_PRICE_ID = re.compile(r"^price_[A-Za-z0-9_]{1,249}$")


class AskVaultPlan(enum.StrEnum):
    """The AskVault plan of a workspace; "" when never set."""

    UNSPECIFIED = ""
    FREE = "free"
    TEAM = "team"
    BUSINESS = "business"
    ENTERPRISE = "enterprise"


SKILL_PLANS = frozenset({AskVaultPlan.BUSINESS, AskVaultPlan.ENTERPRISE})


@dataclass(frozen=True)
class Bounds:
    """A workspace's bounds. Identity is always required and is not a bound."""

    askvault_plan: AskVaultPlan
    refund_caps: tuple[Money, ...]
    refund_window: timedelta
    plan_changes_per_period: int
    cancellation_grace: timedelta
    confirm_refunds: bool
    confirm_plan_changes: bool
    counter_period: Period
    # The IANA zone whose midnights start the counter periods.
    time_zone: str = "UTC"
    # The prices a customer may move to by themselves; empty for the billing gateway's
    # default (active, recurring, the current price's currency and interval).
    self_serve_price_ids: tuple[str, ...] = ()
    # Resubscriptions (StartResubscription) per period, per visitor and per customer.
    resubscriptions_per_period: int = 2
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def skill_enabled(self) -> bool:
        """Whether the workspace's plan includes the billing skill."""
        return self.askvault_plan in SKILL_PLANS

    def self_serve(self, price_id: str) -> bool:
        """Whether policy lets a customer move to this price by themselves (with an empty
        list every price passes here; the billing gateway then applies its default)."""
        return not self.self_serve_price_ids or price_id in self.self_serve_price_ids

    def refund_cap(self, currency: str) -> Money | None:
        """The cap in this currency, or None when refunds in it are not covered."""
        for cap in self.refund_caps:
            if cap.currency == currency:
                return cap
        return None


# The default automatic refund caps of the major currencies, in major units (about 500 US
# dollars each, rounded to what people in that currency think of as a round amount);
# ``default_caps_spec`` turns them into each currency's minor units.
DEFAULT_REFUND_CAPS_MAJOR: dict[str, Decimal] = {
    "usd": Decimal(500),
    "eur": Decimal(500),
    "gbp": Decimal(400),
    "cad": Decimal(700),
    "aud": Decimal(750),
    "jpy": Decimal(75_000),
    "inr": Decimal(40_000),
}


def default_caps_spec() -> str:
    """The default caps in the settings form: "usd:50000,eur:50000,...,jpy:75000,..."."""
    parts = []
    for code, major in DEFAULT_REFUND_CAPS_MAJOR.items():
        minor = currency.to_minor(major, code)
        assert minor is not None  # whole major amounts fit every currency
        parts.append(f"{code}:{minor}")
    return ",".join(parts)


def parse_caps(spec: str) -> tuple[Money, ...]:
    """ "usd:50000,eur:45000" -> caps (settings form, minor units); ValueError for an item
    that is not "<currency>:<amount>" or a currency named twice."""
    caps: list[Money] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        code, _, amount = item.partition(":")
        code = code.strip().lower()
        if not _CURRENCY.match(code) or not amount.strip().isdigit():
            raise ValueError(f"refund cap {item!r}: expected <currency>:<minor units>")
        if any(cap.currency == code for cap in caps):
            raise ValueError(f"refund cap {item!r}: {code} named twice")
        caps.append(Money(int(amount), code))
    return tuple(caps)


def validate(bounds: Bounds) -> None:
    """Refuses bounds that make no sense (INVALID_ARGUMENT naming each field)."""
    check = errors.Validator()
    seen: set[str] = set()
    for index, cap in enumerate(bounds.refund_caps):
        path = f"bounds.refund_caps[{index}]"
        check.require(bool(_CURRENCY.match(cap.currency)), f"{path}.currency", "lower-case ISO")
        check.require(cap.amount_minor >= 0, f"{path}.amount_minor", "must not be negative")
        check.require(cap.currency not in seen, f"{path}.currency", "one cap per currency")
        seen.add(cap.currency)
    check.require(
        valid_time_zone(bounds.time_zone), "bounds.time_zone", "an IANA time zone (Europe/Paris)"
    )
    check.require(
        timedelta(0) <= bounds.refund_window <= MAX_REFUND_WINDOW,
        "bounds.refund_window",
        f"between 0 and {MAX_REFUND_WINDOW.days} days",
    )
    check.require(
        0 <= bounds.plan_changes_per_period <= MAX_PLAN_CHANGES,
        "bounds.plan_changes_per_period",
        f"between 0 and {MAX_PLAN_CHANGES}",
    )
    check.require(
        0 <= bounds.resubscriptions_per_period <= MAX_PLAN_CHANGES,
        "bounds.resubscriptions_per_period",
        f"between 0 and {MAX_PLAN_CHANGES}",
    )
    prices = bounds.self_serve_price_ids
    check.require(
        len(prices) <= MAX_SELF_SERVE_PRICES
        and len(set(prices)) == len(prices)
        and all(_PRICE_ID.match(price) for price in prices),
        "bounds.self_serve_price_ids",
        f"at most {MAX_SELF_SERVE_PRICES} distinct Stripe price ids (price_...)",
    )
    check.require(
        timedelta(0) <= bounds.cancellation_grace <= MAX_CANCELLATION_GRACE,
        "bounds.cancellation_grace",
        f"between 0 and {MAX_CANCELLATION_GRACE.days} days",
    )
    check.check()


def loosened_fields(proposed: Bounds, defaults: Bounds, current: Bounds | None = None) -> list[str]:
    """The bounds that the proposal loosens past their defaults (proto field names); an
    empty list means one admin may apply it at once. Two are compared with ``current`` (the
    workspace's bounds now, or the defaults for a workspace without bounds) instead: a new
    time zone counts (it moves the start of the current period, and a period that starts
    again allows everything again), and so do self-serve prices that allow a price the list
    in force did not."""
    in_force = current or defaults
    loosened: list[str] = []
    if proposed.time_zone != in_force.time_zone:
        loosened.append("time_zone")
    if prices_loosened(proposed.self_serve_price_ids, in_force.self_serve_price_ids):
        loosened.append("self_serve_price_ids")
    for cap in proposed.refund_caps:
        default = defaults.refund_cap(cap.currency)
        if default is None or cap.amount_minor > default.amount_minor:
            loosened.append(f"refund_caps.{cap.currency}")
    if proposed.refund_window > defaults.refund_window:
        loosened.append("refund_window")
    if proposed.plan_changes_per_period > defaults.plan_changes_per_period:
        loosened.append("plan_changes_per_period")
    if proposed.resubscriptions_per_period > defaults.resubscriptions_per_period:
        loosened.append("resubscriptions_per_period")
    if proposed.cancellation_grace < defaults.cancellation_grace:
        loosened.append("cancellation_grace")
    if defaults.confirm_refunds and not proposed.confirm_refunds:
        loosened.append("confirm_refunds")
    if defaults.confirm_plan_changes and not proposed.confirm_plan_changes:
        loosened.append("confirm_plan_changes")
    if LENGTH_ORDER[proposed.counter_period] < LENGTH_ORDER[defaults.counter_period]:
        loosened.append("counter_period")
    return loosened


def prices_loosened(proposed: tuple[str, ...], in_force: tuple[str, ...]) -> bool:
    """Whether a self-serve list allows a price that ``in_force`` did not: an empty list
    allows every price the gateway's default lets through, so only an empty list in force is
    never narrowed by emptying."""
    if not in_force:
        return False
    return not proposed or not set(proposed) <= set(in_force)


def for_unknown_workspace(defaults: Bounds) -> Bounds:
    """What a workspace without a bounds row gets: the defaults with no AskVault plan, so
    the skill stays off until an admin sets the plan."""
    return replace(defaults, askvault_plan=AskVaultPlan.UNSPECIFIED)
