"""The two messages that close an escalation for the customer: it was approved (and carried
out, or could no longer apply), or it was declined with the reason.

Variables (what the billing gateway sends with ``TEMPLATE_ESCALATION_APPROVED`` /
``TEMPLATE_ESCALATION_DECLINED``):

- ``escalation_id`` (required): the escalation, quoted as the customer's reference.
- ``action_summary`` (required): what was asked, in words ("refund $49 of the May 3 charge").
- ``amount`` (optional): the amount formatted for people ("$49").
- approved only: ``outcome`` (required) ``"executed"`` or ``"failed"``; ``failure_reason``
  (required when failed) a code such as ``ALREADY_REFUNDED`` or a sentence; ``reference``
  (optional) the Stripe object made (refund id).
- declined only: ``reason`` (required) why, as the admin wrote it.

Free text (the summary, the reasons) is redacted like every user-made value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from notifier.domain.template_parts import FOOTER_HTML, FOOTER_TEXT, Template
from runtime import errors, logs

APPROVED = "escalation_approved"
DECLINED = "escalation_declined"
EXECUTED = "executed"
FAILED = "failed"
OUTCOMES = (EXECUTED, FAILED)

# Failure codes the billing gateway records, in the customer's words.
_FAILURES = {
    "ALREADY_REFUNDED": "the charge was already refunded",
    "SUBSCRIPTION_CHANGED": "your subscription changed since you asked",
    "CHARGE_NOT_FOUND": "the charge could not be found",
    "SUBSCRIPTION_NOT_FOUND": "the subscription could not be found",
    "GRANT_EXPIRED": "the approval expired before it could be used",
    "OUT_OF_BOUNDS": "it is outside what the approver may allow",
}


def failure_text(reason: str) -> str:
    """A failure reason for people: a known code in words, a code made readable, or the
    sentence as given."""
    reason = reason.strip()
    if reason in _FAILURES:
        return _FAILURES[reason]
    if reason and reason.replace("_", "").isalnum() and reason.upper() == reason:
        return reason.replace("_", " ").lower()
    return reason


def _approved_values(variables: Mapping[str, str], reply_to: str) -> dict[str, str]:
    """The lines that differ by outcome; the other one is empty, so its line is left out."""
    outcome = variables.get("outcome", "")
    amount = variables.get("amount", "")
    executed = failed = ""
    if outcome == EXECUTED:
        executed = "It was approved and carried out" + (f": {amount}." if amount else ".")
    elif outcome == FAILED:
        why = logs.redact(failure_text(variables.get("failure_reason", "")))
        failed = f"It was approved, but it could no longer be done: {why}. Nothing was changed."
    headline = (
        "Your request was carried out"
        if outcome == EXECUTED
        else "Your request could not be carried out"
        if outcome == FAILED
        else "An update on your request"
    )
    return {
        "executed_line": executed,
        "failed_line": failed,
        "headline": headline,
        "result": executed or failed or headline,
    }


def _check_approved(variables: Mapping[str, str], check: errors.Validator) -> None:
    outcome = variables.get("outcome", "")
    if outcome:
        check.require(outcome in OUTCOMES, "variables.outcome", "executed or failed")
    if outcome == FAILED:
        check.require(
            bool(variables.get("failure_reason", "").strip()),
            "variables.failure_reason",
            "required when the outcome is failed",
        )


TEMPLATES = (
    Template(
        key=APPROVED,
        required=("escalation_id", "action_summary", "outcome"),
        optional=("amount", "failure_reason", "reference"),
        subject="{headline}: {action_summary}",
        text=(
            "Hi {name},\n\n"
            "About your request {escalation_id} ({action_summary}):\n"
            "{executed_line}\n"
            "{failed_line}\n"
            "Reference: {reference}\n" + FOOTER_TEXT
        ),
        html=(
            "<p>Hi {name},</p>\n"
            "<p>About your request {escalation_id} (<b>{action_summary}</b>):</p>\n"
            "<p>{executed_line}</p>\n"
            "<p>{failed_line}</p>\n"
            "<p>Reference: {reference}</p>\n" + FOOTER_HTML
        ),
        whatsapp_name="escalation_approved_v1",
        whatsapp_params=("name", "action_summary", "result"),
        free_text=("action_summary", "failure_reason"),
    ),
    Template(
        key=DECLINED,
        required=("escalation_id", "action_summary", "reason"),
        optional=("amount",),
        subject="Your request was declined: {action_summary}",
        text=(
            "Hi {name},\n\n"
            "About your request {escalation_id} ({action_summary}):\n"
            "It was declined: {reason}\n"
            "Amount asked: {amount}\n"
            "Nothing was changed. Reply or write to us in the chat if you have questions.\n"
            + FOOTER_TEXT
        ),
        html=(
            "<p>Hi {name},</p>\n"
            "<p>About your request {escalation_id} (<b>{action_summary}</b>):</p>\n"
            "<p>It was declined: {reason}</p>\n"
            "<p>Amount asked: {amount}</p>\n"
            "<p>Nothing was changed. Reply or write to us in the chat if you have questions.</p>\n"
            + FOOTER_HTML
        ),
        whatsapp_name="escalation_declined_v1",
        whatsapp_params=("name", "action_summary", "reason"),
        free_text=("action_summary", "reason"),
    ),
)

# Values made from the variables, by template key (see templates._DERIVED).
DERIVED: dict[str, Callable[[Mapping[str, str], str], dict[str, str]]] = {
    APPROVED: _approved_values,
}
# Checks beyond "required and known", by template key.
CHECKS: dict[str, Callable[[Mapping[str, str], errors.Validator], None]] = {
    APPROVED: _check_approved,
}
