"""How a turn counts on the owner's outcomes page, and the one line that tells a returning
customer how their escalation ended. Pure rules: no gRPC, no SQL."""

from __future__ import annotations

from dataclasses import dataclass

from askvault.common.v1 import common_pb2 as cpb
from askvault.policy.v1 import policy_pb2 as ppb
from edge.domain import formatting, redaction
from edge.domain.intents import BILLING_INTENTS, Intent

# Billing intents a conversation is counted under (a clarifying question or a WhatsApp
# opt-in is neither resolved nor handed off).
COUNTED_INTENTS = frozenset(BILLING_INTENTS - {Intent.CLARIFY, Intent.WHATSAPP_OPT_IN})
# Turns that continue the conversation's latest billing intent.
_CONTINUING = frozenset({Intent.YES, Intent.NO, Intent.HUMAN})
# Reply statuses that answer the request without a human.
_RESOLVING = frozenset({"ok", "denied", "not_found"})
_HANDED_OFF = frozenset({"handoff", "escalated"})
_REFUND_INTENTS = frozenset({Intent.REFUND, Intent.DUPLICATE_CHARGE})

AUTOMATIC = "automatic"
ESCALATED = "escalated"


@dataclass(frozen=True)
class TurnOutcome:
    """One turn's part in how its conversation went."""

    # The billing intent; '' continues the conversation's latest one.
    intent: str
    resolved: bool
    handed_off: bool
    # For refund requests: AUTOMATIC (policy quoted it), ESCALATED, or ''.
    refund_decision: str


def _intent(value: str) -> Intent | None:
    try:
        return Intent(value)
    except ValueError:
        return None


def of_turn(parsed: Intent, reply_intent: str, status: str, escalated: bool) -> TurnOutcome | None:
    """How the turn counts; None for a turn outside any billing request (a greeting)."""
    answered = _intent(reply_intent)
    handed_off = escalated or status in _HANDED_OFF
    if answered in COUNTED_INTENTS:
        intent = answered
    elif parsed in COUNTED_INTENTS:
        intent = parsed
    elif parsed in _CONTINUING or answered in _CONTINUING:
        intent = None
    else:
        return None
    refund = ""
    if intent is None or intent in _REFUND_INTENTS:
        # Policy's own decision only: a visitor asking for a human is not an escalation.
        if status == "needs_confirmation":
            refund = AUTOMATIC
        elif status == "escalated":
            refund = ESCALATED
    return TurnOutcome(
        intent=intent.value if intent is not None else "",
        resolved=status in _RESOLVING and not handed_off,
        handed_off=handed_off,
        refund_decision=refund,
    )


# ----- the returning customer's notice -----

FINAL_STATES = {
    ppb.ESCALATION_STATE_EXECUTED: "executed",
    ppb.ESCALATION_STATE_FAILED: "failed",
    ppb.ESCALATION_STATE_REJECTED: "rejected",
}
_DONE = {
    cpb.BILLING_ACTION_CHANGE_PLAN: "your plan change is done",
    cpb.BILLING_ACTION_CANCEL_SUBSCRIPTION: "your cancellation is scheduled",
    cpb.BILLING_ACTION_PAUSE_SUBSCRIPTION: "your subscription is paused",
    cpb.BILLING_ACTION_RESUME_SUBSCRIPTION: "your subscription is resumed",
    cpb.BILLING_ACTION_RETRY_PAYMENT: "we retried your payment",
    cpb.BILLING_ACTION_START_RESUBSCRIPTION: "your new subscription is set up",
}
_WHAT = {
    cpb.BILLING_ACTION_CHANGE_PLAN: "a plan change",
    cpb.BILLING_ACTION_CANCEL_SUBSCRIPTION: "a cancellation",
    cpb.BILLING_ACTION_PAUSE_SUBSCRIPTION: "pausing your subscription",
    cpb.BILLING_ACTION_RESUME_SUBSCRIPTION: "resuming your subscription",
    cpb.BILLING_ACTION_RETRY_PAYMENT: "retrying a payment",
    cpb.BILLING_ACTION_START_RESUBSCRIPTION: "a new subscription",
}
# Failure codes the billing gateway records, in the customer's words.
_FAILURES = {
    "ALREADY_REFUNDED": "the charge was already refunded",
    "SUBSCRIPTION_CHANGED": "your subscription changed since you asked",
    "CHARGE_NOT_FOUND": "the charge could not be found",
    "SUBSCRIPTION_NOT_FOUND": "the subscription could not be found",
    "GRANT_EXPIRED": "the approval expired before it could be used",
}
PREFIX = "About your earlier request"


def _amount(escalation: ppb.Escalation) -> str:
    money = escalation.details.amount
    return formatting.money(money.amount_minor, money.currency) if money.currency else ""


def _what(escalation: ppb.Escalation) -> str:
    if escalation.action == cpb.BILLING_ACTION_REFUND:
        amount = _amount(escalation)
        return f"a refund of {amount}" if amount else "a refund"
    return _WHAT.get(escalation.action, "")


def _failure(reason: str) -> str:
    reason = reason.strip()
    if reason in _FAILURES:
        return _FAILURES[reason]
    if reason and reason.replace("_", "").isalnum() and reason.upper() == reason:
        return reason.replace("_", " ").lower()
    return redaction.redact(reason) or "it no longer applied"


def notice(escalation: ppb.Escalation) -> str:
    """The line before the reply telling how the escalation ended; '' while it is open."""
    what = _what(escalation)
    about = f"{PREFIX} ({what})" if what else PREFIX
    state = escalation.state
    if state == ppb.ESCALATION_STATE_EXECUTED:
        if escalation.action == cpb.BILLING_ACTION_REFUND:
            amount = _amount(escalation)
            return f"{PREFIX}: we refunded {amount}." if amount else f"{PREFIX}: we refunded it."
        done = _DONE.get(escalation.action, "it has been taken care of")
        return f"{PREFIX}: {done}."
    if state == ppb.ESCALATION_STATE_FAILED:
        return (
            f"{about}: it could not be done because {_failure(escalation.failure_reason)}; "
            "nothing was changed."
        )
    if state == ppb.ESCALATION_STATE_REJECTED:
        note = redaction.redact(escalation.decision_note.strip()).rstrip(".")
        return f"{about}: it was declined: {note}." if note else f"{about}: it was declined."
    return ""
