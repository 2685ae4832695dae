"""Policy's answers in the visitor's words: why an action was refused or passed to a human,
with the numbers of the limit it met."""

from __future__ import annotations

from askvault.policy.v1 import policy_pb2 as ppb
from edge import views
from edge.domain import formatting
from edge.turn import Context

# The billing gateway refused the move at write time: the price is not (or no longer) one the
# customer may switch to by themselves.
PRICE_NOT_SELF_SERVE = (
    "That plan isn't one you can switch to by yourself here, so nothing changed. "
    "Want me to get a human?"
)


def escalated(short: str, because: str) -> str:
    return f"I can't {short} on my own ({because}). I've passed it to our team with the details"


def denied(short: str, because: str) -> str:
    return f"I can't {short}: {because}."


def reason_text(decision: ppb.AuthorizeResponse, context: Context) -> str:
    """A decision's reason in words, with its numbers."""
    money = views.money_text
    reason = decision.reason
    usage = decision.usage
    resets = (
        f"; the next is possible on {formatting.date(views.moment(usage.resets_at), context.zone)}"
        if usage.HasField("resets_at")
        else ""
    )
    # The bound reached may be the Stripe customer's, shared by everyone on the account.
    shared = usage.scope == ppb.COUNTER_SCOPE_CUSTOMER
    if reason == ppb.DECISION_REASON_PLAN_CHANGE_LIMIT:
        who = "your billing account has" if shared else "you've"
        return (
            f"{who} used {usage.used_count} of {usage.limit_count} plan changes this month{resets}"
        )
    if reason == ppb.DECISION_REASON_RESUBSCRIPTION_LIMIT:
        who = "your billing account has" if shared else "you've"
        return (
            f"{who} started {usage.used_count} of {usage.limit_count} re-subscriptions this "
            f"month{resets}"
        )
    if reason == ppb.DECISION_REASON_REFUND_OVER_CAP:
        if usage.HasField("limit_amount"):
            scope = " for your billing account" if shared else ""
            return (
                f"automatic refunds are limited to {money(usage.limit_amount)} per period"
                f"{scope} and {money(usage.remaining_amount)} is left{resets}"
            )
        return "it is over the automatic refund limit"
    if reason == ppb.DECISION_REASON_REFUND_OUTSIDE_WINDOW:
        days = decision.refund_window.seconds // 86_400 if decision.HasField("refund_window") else 0
        return (
            f"the charge is older than the {days}-day refund window"
            if days
            else "the charge is outside the refund window"
        )
    return _REASONS.get(reason, "it isn't allowed")


_NOT_YOU = "I couldn't confirm who you are"
_REASONS: dict[int, str] = {
    ppb.DECISION_REASON_CONFIRMATION_INVALID: (
        "your confirmation didn't match what I offered, so nothing changed; ask me again"
    ),
    ppb.DECISION_REASON_CURRENCY_NOT_COVERED: "automatic refunds aren't set up for that currency",
    ppb.DECISION_REASON_CUSTOMER_NOT_LINKED: "your account isn't linked to a billing profile yet",
    ppb.DECISION_REASON_SKILL_NOT_ENABLED: "billing actions aren't enabled for this workspace",
    ppb.DECISION_REASON_IDENTITY_REQUIRED: _NOT_YOU,
    ppb.DECISION_REASON_ASSERTION_INVALID: _NOT_YOU,
    ppb.DECISION_REASON_ASSERTION_EXPIRED: _NOT_YOU,
    ppb.DECISION_REASON_WORKSPACE_MISMATCH: _NOT_YOU,
    ppb.DECISION_REASON_INVALID_DETAILS: "the request isn't valid",
    ppb.DECISION_REASON_PRICE_NOT_SELF_SERVE: (
        "that plan isn't one you can switch to by yourself here; our team can help with it"
    ),
}
