"""Pending proposals: what the bot offered and waits on a "yes" for.

A "yes" confirms only the newest proposal made to that visitor in that conversation, and
only while it has not expired or been answered. Every key sent to policy and billing for a
proposal is derived from its id, so an HTTP retry of the same "yes" never acts twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from edge.domain import formatting


class ProposalKind(enum.Enum):
    """What a proposal would do."""

    REFUND = "refund"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RESUBSCRIBE = "resubscribe"
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
class Money:
    """An amount in integer minor units of its currency, as Stripe counts it (¥50 is 50, $50
    is 5,000): the one form an amount has from the chosen charge to the refund request."""

    amount_minor: int
    currency: str

    @property
    def display(self) -> str:
        """The amount the way the bot says it ("$49")."""
        return formatting.money(self.amount_minor, self.currency)

    def as_json(self) -> dict[str, Any]:
        """The amount as tool callers receive it, with its display text."""
        return {
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "display": self.display,
        }


@dataclass(frozen=True)
class RefundTerms:
    """Refund ``amount`` of one charge."""

    KIND: ClassVar[ProposalKind] = ProposalKind.REFUND

    charge_id: str
    amount: Money
    # When the charge was made: policy checks the refund window against it.
    charge_created_at: datetime
    # A billing.v1 RefundReason value.
    reason: int
    # "Visa •••• 4242", or empty when the charge names no card.
    card: str
    # What the action is called when it is refused ("refund $49").
    short: str = ""


@dataclass(frozen=True)
class PlanChangeTerms:
    """Move one subscription to another price."""

    KIND: ClassVar[ProposalKind] = ProposalKind.CHANGE_PLAN

    subscription_id: str
    target_price_id: str
    target_name: str
    old_name: str
    features_gained: tuple[str, ...]
    short: str = ""


@dataclass(frozen=True)
class ResubscribeTerms:
    """Move a subscription that can't change in place (UPI, an Indian eMandate) to another
    price: a Checkout link subscribes anew with a new mandate, and the current subscription
    ends at its period end once the new one is active. Policy grants it as a plan change."""

    KIND: ClassVar[ProposalKind] = ProposalKind.RESUBSCRIBE

    subscription_id: str
    target_price_id: str
    target_name: str
    old_name: str
    short: str = ""


@dataclass(frozen=True)
class CancelTerms:
    """Cancel one subscription (after the grace period)."""

    KIND: ClassVar[ProposalKind] = ProposalKind.CANCEL

    subscription_id: str
    # The plan's name, for the replies.
    plan: str
    short: str = ""


@dataclass(frozen=True)
class PauseTerms:
    """Pause payments of one subscription."""

    KIND: ClassVar[ProposalKind] = ProposalKind.PAUSE

    subscription_id: str
    plan: str
    short: str = ""


@dataclass(frozen=True)
class ResumeTerms:
    """Resume payments of one paused subscription."""

    KIND: ClassVar[ProposalKind] = ProposalKind.RESUME

    subscription_id: str
    plan: str
    short: str = ""


@dataclass(frozen=True)
class RetryTerms:
    """Retry the payment of one invoice."""

    KIND: ClassVar[ProposalKind] = ProposalKind.RETRY_PAYMENT

    invoice_id: str
    # The amount due as shown ("$49"), or empty when not known.
    amount_text: str
    short: str = ""


@dataclass(frozen=True)
class InvoiceRecord:
    """One invoice as listed to the visitor and sent in a bundle."""

    invoice_id: str
    number: str
    status: str
    amount_due: Money
    amount_paid: Money
    created_at: datetime
    pdf_url: str
    hosted_url: str

    def as_json(self) -> dict[str, Any]:
        """The invoice as tool callers receive it."""
        return {
            "invoice_id": self.invoice_id,
            "number": self.number,
            "status": self.status,
            "amount_due": self.amount_due.as_json(),
            "amount_paid": self.amount_paid.as_json(),
            "created_at": self.created_at.isoformat(),
            "pdf_url": self.pdf_url,
            "hosted_url": self.hosted_url,
        }


@dataclass(frozen=True)
class InvoiceBundleTerms:
    """Email the invoices of a period as one bundle (moves no money)."""

    KIND: ClassVar[ProposalKind] = ProposalKind.EMAIL_INVOICES

    period: str
    invoices: tuple[InvoiceRecord, ...]


# The terms of a proposal that moves money or charges a card: policy authorizes them, and
# they run only as the quote the person confirmed.
MoneyTerms = (
    RefundTerms
    | PlanChangeTerms
    | ResubscribeTerms
    | CancelTerms
    | PauseTerms
    | ResumeTerms
    | RetryTerms
)
# The terms of any proposal.
Terms = MoneyTerms | InvoiceBundleTerms


@dataclass(frozen=True)
class Proposal:
    """One offer awaiting a "yes"."""

    workspace_id: str
    conversation_id: str
    proposal_id: str
    contact_id: str
    terms: Terms
    summary: str
    state: ProposalState
    created_at: datetime
    expires_at: datetime
    # The hash of the quoted terms (runtime.quotes); empty for proposals that move no money.
    terms_hash: str = ""
    # Set once the person confirmed on the confirmation page (the MCP elicitation's URL).
    person_confirmed_at: datetime | None = None
    person_confirmed_channel: str = ""

    @property
    def kind(self) -> ProposalKind:
        """What the proposal would do."""
        return self.terms.KIND


@dataclass(frozen=True)
class Quote:
    """The terms a person is asked to confirm: what will happen (``summary``, the sentence
    shown), until when the offer stands, and the hash policy checks them by."""

    quote_id: str
    summary: str
    expires_at: datetime
    terms_hash: str

    def as_json(self) -> dict[str, str]:
        """The quote as tool callers and the chat UI receive it."""
        return {
            "quote_id": self.quote_id,
            "summary": self.summary,
            "expires_at": self.expires_at.isoformat(),
            "terms_hash": self.terms_hash,
        }


class Refusal(enum.Enum):
    """Why a "yes" confirms nothing."""

    NOTHING_PENDING = "nothing_pending"
    EXPIRED = "expired"
    OTHER_VISITOR = "other_visitor"
    ALREADY_ANSWERED = "already_answered"
    # The confirmation named terms other than the proposal's (a stale or altered quote).
    TERMS_CHANGED = "terms_changed"


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
