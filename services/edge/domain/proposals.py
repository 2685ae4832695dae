"""Pending proposals: what the bot offered and waits on a "yes" for.

A "yes" confirms only the newest proposal made to that visitor in that conversation, and
only while it has not expired or been answered. Every key sent to policy and billing for a
proposal is derived from its id, so an HTTP retry of the same "yes" never acts twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class ProposalKind(enum.Enum):
    """What a proposal would do."""

    REFUND = "refund"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    PAUSE = "pause"
    RETRY_PAYMENT = "retry_payment"
    EMAIL_INVOICES = "email_invoices"


class ProposalState(enum.Enum):
    """The life of a proposal."""

    PENDING = "pending"
    CONFIRMING = "confirming"
    DONE = "done"
    DECLINED = "declined"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Proposal:
    """One offer awaiting a "yes"."""

    workspace_id: str
    conversation_id: str
    proposal_id: str
    contact_id: str
    kind: ProposalKind
    details: dict[str, Any]
    summary: str
    state: ProposalState
    created_at: datetime
    expires_at: datetime
    # The hash of the quoted terms (runtime.quotes); empty for proposals that move no money.
    terms_hash: str = ""
    # Set once the person confirmed on the confirmation page (the MCP elicitation's URL).
    person_confirmed_at: datetime | None = None
    person_confirmed_channel: str = ""


class Refusal(enum.Enum):
    """Why a "yes" confirms nothing."""

    NOTHING_PENDING = "nothing_pending"
    EXPIRED = "expired"
    OTHER_VISITOR = "other_visitor"
    ALREADY_ANSWERED = "already_answered"


def confirmable(proposal: Proposal | None, contact_id: str, now: datetime) -> Refusal | None:
    """None when a "yes" from this contact now confirms the proposal, else why not.

    CONFIRMING counts as confirmable: a retried "yes" after a crash drives the same keys
    again, which policy and billing answer with their first result.
    """
    if proposal is None:
        return Refusal.NOTHING_PENDING
    if proposal.contact_id != contact_id:
        return Refusal.OTHER_VISITOR
    if proposal.state not in (ProposalState.PENDING, ProposalState.CONFIRMING):
        return Refusal.ALREADY_ANSWERED
    if now >= proposal.expires_at:
        return Refusal.EXPIRED
    return None


def key(proposal_id: str, step: str) -> str:
    """The idempotency key of one step of a proposal ("ask", "confirm", "do", "notify")."""
    return f"edge:{proposal_id}:{step}"
