"""The decision rules of Authorize, in the order they apply.

1. identity (checked by the caller: assertion signature, expiry, workspace) -> DENY;
2. the AskVault plan must include the skill -> DENY SKILL_NOT_ENABLED;
3. the contact must be linked to a Stripe customer -> DENY CUSTOMER_NOT_LINKED;
4. the details must describe the action, for the assertion's customer -> DENY INVALID_DETAILS;
   a plan change or resubscription must target one of the workspace's self-serve prices
   (when it lists any) -> DENY PRICE_NOT_SELF_SERVE (a static fact: no "yes" is asked for);
5. confirmed = true counts only with the person's Confirmation: a channel, a quote not
   expired (``QUOTE_CLOCK_SKEW`` allowed) and a terms hash equal to the one of this very
   request (runtime.quotes.terms_hash) -> otherwise DENY CONFIRMATION_INVALID, before any
   escalation or reservation (a model's claim of a yes must not move anything);
6. refunds: the charge must be inside the refund window, and the currency must have a cap
   -> ESCALATE REFUND_OUTSIDE_WINDOW / CURRENCY_NOT_COVERED (static facts: asking the visitor
   to confirm first would only delay the hand-off);
7. every money action (refund, plan change, resubscription, cancel, pause, resume, retry
   payment): not confirmed -> NEEDS_CONFIRMATION, with the counter's numbers for refunds,
   plan changes and resubscriptions so the bot can warn before asking (the workspace's
   confirm_* bounds no longer waive it);
8. refunds, plan changes and resubscriptions: reserve against the period's counter of the
   Stripe customer and of the visitor, both with the same limit -> ALLOW, or ESCALATE
   REFUND_OVER_CAP / DENY PLAN_CHANGE_LIMIT / DENY RESUBSCRIPTION_LIMIT when either does not
   fit (the reply's usage names that bound);
9. cancel, pause, resume, retry payment, confirmed: ALLOW (cancellations carry the grace).
"""

from __future__ import annotations

import enum
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from policy.domain import periods
from policy.domain.bounds import Bounds
from policy.domain.model import PRICE_MOVES, Action, Confirmation, Details, Money

_CURRENCY = re.compile(r"^[a-z]{3}$")
# How far in the future a charge's creation time may lie (clock skew with Stripe).
CHARGE_CLOCK_SKEW = timedelta(minutes=5)
# Longest identifier accepted in details (Stripe ids are far shorter).
MAX_ID_LENGTH = 255
# How long after its expiry a quote is still accepted (clock skew between edge and policy).
QUOTE_CLOCK_SKEW = timedelta(seconds=5)


class Verdict(enum.StrEnum):
    """What a decision says."""

    ALLOW = "ALLOW"
    NEEDS_CONFIRMATION = "NEEDS_CONFIRMATION"
    ESCALATE = "ESCALATE"
    DENY = "DENY"


class Reason(enum.StrEnum):
    """Why (askvault.policy.v1.DecisionReason without the prefix)."""

    WITHIN_BOUNDS = "WITHIN_BOUNDS"
    IDENTITY_REQUIRED = "IDENTITY_REQUIRED"
    ASSERTION_INVALID = "ASSERTION_INVALID"
    ASSERTION_EXPIRED = "ASSERTION_EXPIRED"
    WORKSPACE_MISMATCH = "WORKSPACE_MISMATCH"
    SKILL_NOT_ENABLED = "SKILL_NOT_ENABLED"
    REFUND_OVER_CAP = "REFUND_OVER_CAP"
    REFUND_OUTSIDE_WINDOW = "REFUND_OUTSIDE_WINDOW"
    PLAN_CHANGE_LIMIT = "PLAN_CHANGE_LIMIT"
    CURRENCY_NOT_COVERED = "CURRENCY_NOT_COVERED"
    CONFIRMATION_REQUIRED = "CONFIRMATION_REQUIRED"
    CUSTOMER_NOT_LINKED = "CUSTOMER_NOT_LINKED"
    INVALID_DETAILS = "INVALID_DETAILS"
    ESCALATION_APPROVED = "ESCALATION_APPROVED"
    CONFIRMATION_INVALID = "CONFIRMATION_INVALID"
    PRICE_NOT_SELF_SERVE = "PRICE_NOT_SELF_SERVE"
    RESUBSCRIPTION_LIMIT = "RESUBSCRIPTION_LIMIT"


class Counter(enum.StrEnum):
    """The counters, each kept per visitor and per Stripe customer."""

    REFUND_AMOUNT = "refund_amount"
    PLAN_CHANGES = "plan_changes"
    RESUBSCRIPTIONS = "resubscriptions"


# The count each counted action reserves on (refunds reserve an amount instead).
_COUNTED = {
    Action.CHANGE_PLAN: Counter.PLAN_CHANGES,
    Action.START_RESUBSCRIPTION: Counter.RESUBSCRIPTIONS,
}


class Scope(enum.StrEnum):
    """Whose counter (askvault.policy.v1.CounterScope without the prefix, lower case)."""

    VISITOR = "visitor"
    CUSTOMER = "customer"


# The order bounds are checked and their rows locked in: the customer's first.
SCOPES = (Scope.CUSTOMER, Scope.VISITOR)


@dataclass(frozen=True)
class Reservation:
    """What an ALLOW reserves: ``quantity`` on one counter of one period, up to ``limit``,
    on the customer's row and on the visitor's alike."""

    counter: Counter
    currency: str  # "" for counts
    quantity: int
    limit: int
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True)
class Usage:
    """A counter's state after (or without) a reservation."""

    counter: Counter
    currency: str
    used: int
    limit: int
    resets_at: datetime
    scope: Scope

    @property
    def remaining(self) -> int:
        """What is left in the period (never negative: approvals may go past the cap)."""
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class Decision:
    """A decision before the counters are touched.

    ``reservation`` set with ALLOW means "allow if the reservation fits"; with
    NEEDS_CONFIRMATION it names the counter whose numbers to show. ``escalate`` asks the
    caller to open an escalation. ``details`` are the checked details (customer filled in).
    """

    verdict: Verdict
    reason: Reason
    details: Details
    reservation: Reservation | None = None
    escalate: bool = False


def _deny(reason: Reason, details: Details) -> Decision:
    return Decision(Verdict.DENY, reason, details)


def confirmation_problem(
    confirmation: Confirmation | None, expected_terms_hash: str, now: datetime
) -> str:
    """What is wrong with a presented confirmation, or "" when it is the person's yes to
    exactly these terms. ``expected_terms_hash`` is the hash of the request's own terms
    (with the quote's summary and expiry), "" when it could not be computed."""
    if confirmation is None:
        return "confirmed without a confirmation"
    if confirmation.channel is None:
        return "the confirmation names no channel"
    if confirmation.expires_at is None:
        return "the quote has no expiry"
    if now - QUOTE_CLOCK_SKEW > confirmation.expires_at:  # (no overflow near year 9999)
        return "the quote expired"
    if not expected_terms_hash or not hmac.compare_digest(
        confirmation.terms_hash.encode(), expected_terms_hash.encode()
    ):
        return "the quote is for other terms"
    return ""


def details_problem(action: Action, details: Details, now: datetime) -> str:
    """What is wrong with the details for this action, or "" when they describe it."""
    ids = (
        details.charge_id,
        details.subscription_id,
        details.invoice_id,
        details.target_price_id,
        details.stripe_customer_id,
    )
    if any(len(value) > MAX_ID_LENGTH for value in ids):
        return "an identifier is too long"
    if action is Action.REFUND:
        if not details.charge_id:
            return "a refund needs charge_id"
        amount = details.amount
        if amount is None or amount.amount_minor <= 0:
            return "a refund needs a positive amount"
        if not _CURRENCY.match(amount.currency):
            return "a refund needs a lower-case ISO currency"
        if details.charge_created_at is None:
            return "a refund needs charge_created_at"
        if details.charge_created_at > now + CHARGE_CLOCK_SKEW:
            return "charge_created_at lies in the future"
        return ""
    if details.amount is not None and details.amount.amount_minor != 0:
        return "only refunds carry an amount"
    if action in PRICE_MOVES:
        if not details.subscription_id or not details.target_price_id:
            return "a move to another price needs subscription_id and target_price_id"
        return ""
    if action in (
        Action.CANCEL_SUBSCRIPTION,
        Action.PAUSE_SUBSCRIPTION,
        Action.RESUME_SUBSCRIPTION,
    ):
        return "" if details.subscription_id else "the action needs subscription_id"
    if action is Action.RETRY_PAYMENT:
        return "" if details.invoice_id else "a payment retry needs invoice_id"
    return "unknown action"


def with_customer(details: Details, assertion_customer: str) -> Details | None:
    """The details bound to the assertion's customer; None when they name another one."""
    if not details.stripe_customer_id:
        return replace(details, stripe_customer_id=assertion_customer)
    if details.stripe_customer_id != assertion_customer:
        return None
    return details


def decide(
    action: Action,
    details: Details,
    bounds: Bounds,
    *,
    assertion_customer: str,
    confirmed: bool,
    confirmation: Confirmation | None,
    expected_terms_hash: str,
    now: datetime,
) -> Decision:
    """Rules 2 to 9 (identity was verified by the caller)."""
    if not bounds.skill_enabled:
        return _deny(Reason.SKILL_NOT_ENABLED, details)
    if not assertion_customer:
        return _deny(Reason.CUSTOMER_NOT_LINKED, details)
    bound = with_customer(details, assertion_customer)
    if bound is None or details_problem(action, bound, now):
        return _deny(Reason.INVALID_DETAILS, bound or details)
    details = bound
    if action in PRICE_MOVES and not bounds.self_serve(details.target_price_id):
        return _deny(Reason.PRICE_NOT_SELF_SERVE, details)
    if confirmed and confirmation_problem(confirmation, expected_terms_hash, now):
        return _deny(Reason.CONFIRMATION_INVALID, details)
    period_start, period_end = periods.bounds_of(bounds.counter_period, now, bounds.time_zone)
    if action is Action.REFUND:
        assert details.amount is not None and details.charge_created_at is not None
        if now - details.charge_created_at > bounds.refund_window:
            return Decision(Verdict.ESCALATE, Reason.REFUND_OUTSIDE_WINDOW, details, escalate=True)
        cap = bounds.refund_cap(details.amount.currency)
        if cap is None:
            return Decision(Verdict.ESCALATE, Reason.CURRENCY_NOT_COVERED, details, escalate=True)
        reservation = Reservation(
            Counter.REFUND_AMOUNT,
            cap.currency,
            details.amount.amount_minor,
            cap.amount_minor,
            period_start,
            period_end,
        )
        if not confirmed:
            return Decision(
                Verdict.NEEDS_CONFIRMATION, Reason.CONFIRMATION_REQUIRED, details, reservation
            )
        return Decision(Verdict.ALLOW, Reason.WITHIN_BOUNDS, details, reservation)
    counter = _COUNTED.get(action)
    if counter is not None:
        reservation = Reservation(
            counter, "", 1, limit_for(counter, "", bounds), period_start, period_end
        )
        if not confirmed:
            return Decision(
                Verdict.NEEDS_CONFIRMATION, Reason.CONFIRMATION_REQUIRED, details, reservation
            )
        return Decision(Verdict.ALLOW, Reason.WITHIN_BOUNDS, details, reservation)
    if not confirmed:
        return Decision(Verdict.NEEDS_CONFIRMATION, Reason.CONFIRMATION_REQUIRED, details)
    return Decision(Verdict.ALLOW, Reason.WITHIN_BOUNDS, details)


def bound_usage(
    reservation: Reservation, used: Mapping[Scope, int], *, pending: int
) -> tuple[bool, Usage]:
    """Whether ``pending`` more does not fit one of the bounds, and the usage to show: the
    first bound it does not fit (the visitor's own before the customer's, so a customer's
    only visitor hears about their own use), else the one with the least left (the
    customer's on a tie). ``used`` is each row's usage (0 for no row)."""
    usages = [
        Usage(
            reservation.counter,
            reservation.currency,
            used.get(scope, 0),
            reservation.limit,
            reservation.period_end,
            scope,
        )
        for scope in SCOPES
    ]
    for usage in sorted(usages, key=lambda usage: usage.scope is not Scope.VISITOR):
        if usage.used + pending > usage.limit:
            return True, usage
    return False, min(usages, key=lambda usage: usage.remaining)


def over_limit(decision: Decision) -> Decision:
    """The decision when the reservation did not fit the counter."""
    assert decision.reservation is not None
    if decision.reservation.counter is Counter.REFUND_AMOUNT:
        return replace(
            decision, verdict=Verdict.ESCALATE, reason=Reason.REFUND_OVER_CAP, escalate=True
        )
    if decision.reservation.counter is Counter.RESUBSCRIPTIONS:
        return replace(decision, verdict=Verdict.DENY, reason=Reason.RESUBSCRIPTION_LIMIT)
    return replace(decision, verdict=Verdict.DENY, reason=Reason.PLAN_CHANGE_LIMIT)


def approval_reservation(
    action: Action, details: Details, bounds: Bounds, now: datetime
) -> Reservation | None:
    """What an approved escalation reserves: the same counters a normal grant would, so the
    visitor's and the customer's remaining allowance shrink, but with no limit (an admin
    decided)."""
    period_start, period_end = periods.bounds_of(bounds.counter_period, now, bounds.time_zone)
    if action is Action.REFUND and details.amount is not None:
        return Reservation(
            Counter.REFUND_AMOUNT,
            details.amount.currency,
            details.amount.amount_minor,
            _NO_LIMIT,
            period_start,
            period_end,
        )
    counter = _COUNTED.get(action)
    if counter is not None:
        return Reservation(counter, "", 1, _NO_LIMIT, period_start, period_end)
    return None


# Large enough that no reservation can exceed it, small enough for a bigint.
_NO_LIMIT = 2**62


def limit_for(counter: Counter, currency: str, bounds: Bounds) -> int:
    """The limit a counter has under these bounds (0 for a currency with no cap)."""
    if counter is Counter.PLAN_CHANGES:
        return bounds.plan_changes_per_period
    if counter is Counter.RESUBSCRIPTIONS:
        return bounds.resubscriptions_per_period
    cap = bounds.refund_cap(currency)
    return cap.amount_minor if cap else 0


def money(amount_minor: int, currency: str) -> Money:
    """Shorthand used when building usage figures."""
    return Money(amount_minor, currency)
