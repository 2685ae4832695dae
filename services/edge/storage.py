"""The edge's storage of conversations, messages, proposals and unverified hand-offs: the
only module that runs that SQL (WhatsApp links: ``whatsapp_storage``).

A proposal's terms are typed in the code and stored as the JSON they always were
(``proposals.details``): the conversion is here, one codec per kind."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from edge.domain.proposals import (
    CancelTerms,
    InvoiceBundleTerms,
    InvoiceRecord,
    Money,
    PauseTerms,
    PlanChangeTerms,
    Proposal,
    ProposalKind,
    ProposalState,
    RefundTerms,
    ResubscribeTerms,
    ResumeTerms,
    RetryTerms,
    Terms,
)
from runtime.database import Connection, Queries

queries = Queries("edge")


@dataclass(frozen=True)
class TranscriptLine:
    """One message of a conversation, already redacted."""

    author: str
    text: str
    intent: str
    created_at: datetime
    # Whether a visitor line's author was verified (None: stored before lines were marked).
    verified: bool | None = None


async def claim_conversation(
    connection: Connection, workspace_id: str, conversation_id: str, channel: str, contact_id: str
) -> str:
    """Creates the conversation or marks it active, making ``contact_id`` (when set) its owner
    if it has none; the owner afterwards ('' while no verified contact has written)."""
    owner: str = await connection.fetchval(
        queries.claim_conversation, workspace_id, conversation_id, channel, contact_id
    )
    return owner


@dataclass(frozen=True)
class TurnClaim:
    """What claiming a turn's conversation answered."""

    # False, and nothing changed, when the conversation belongs to another contact.
    claimed: bool
    # Whether the contact has an escalation due for a look (escalation_notices).
    notices_due: bool


async def claim_for_turn(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    channel: str,
    contact_id: str,
    text: str,
    intent: str,
    *,
    verified: bool,
) -> TurnClaim:
    """``claim_conversation`` and ``append_message`` of the visitor's (redacted) line, in one
    statement, which also says whether the contact has escalation notices due."""
    row = await connection.fetchrow(
        queries.claim_conversation_with_visitor_line,
        workspace_id,
        conversation_id,
        channel,
        contact_id,
        text,
        intent,
        verified,
    )
    assert row is not None
    return TurnClaim(claimed=bool(row["claimed"]), notices_due=bool(row["notices_due"]))


async def claim_with_visitor_line(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    channel: str,
    contact_id: str,
    text: str,
    intent: str,
    *,
    verified: bool,
) -> bool:
    """``claim_for_turn``'s first answer: False, and nothing changed, when the conversation
    belongs to another contact than ``contact_id`` ('' for a visitor nobody verified)."""
    claim = await claim_for_turn(
        connection,
        workspace_id,
        conversation_id,
        channel,
        contact_id,
        text,
        intent,
        verified=verified,
    )
    return claim.claimed


async def append_message(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    author: str,
    text: str,
    intent: str = "",
    *,
    verified: bool | None = None,
) -> None:
    """Adds a (redacted) line to the transcript; ``verified`` says whether a visitor line's
    author was verified (None for the bot's lines)."""
    await connection.execute(
        queries.append_message, workspace_id, conversation_id, author, text, intent, verified
    )


async def recent_messages(
    connection: Connection, workspace_id: str, conversation_id: str, limit: int = 20
) -> list[TranscriptLine]:
    """The last lines of the transcript, oldest first."""
    rows = await connection.fetch(queries.recent_messages, workspace_id, conversation_id, limit)
    return [
        TranscriptLine(
            row["author"], row["text"], row["intent"], row["created_at"], row["verified"]
        )
        for row in rows
    ]


async def add_proposal(
    connection: Connection,
    *,
    workspace_id: str,
    conversation_id: str,
    proposal_id: str,
    contact_id: str,
    terms: Terms,
    summary: str,
    expires_at: datetime,
    terms_hash: str = "",
    confirm_token_sha256: bytes | None = None,
) -> None:
    """Stores a new proposal; any older pending one of the conversation is superseded."""
    async with connection.transaction():
        await connection.execute(queries.supersede_pending, workspace_id, conversation_id)
        await connection.execute(
            queries.insert_proposal,
            workspace_id,
            conversation_id,
            proposal_id,
            contact_id,
            terms.KIND.value,
            json.dumps(_CODECS[terms.KIND].to_json(terms)),
            summary,
            expires_at,
            terms_hash,
            confirm_token_sha256,
        )


@dataclass(frozen=True)
class _Codec:
    """A kind of terms to and from its stored JSON."""

    to_json: Callable[[Any], dict[str, Any]]
    from_json: Callable[[dict[str, Any]], Terms]


def _money(stored: dict[str, Any]) -> Money:
    return Money(stored["amount_minor"], stored["currency"])


def _refund_json(terms: RefundTerms) -> dict[str, Any]:
    return {
        "charge_id": terms.charge_id,
        "amount_minor": terms.amount.amount_minor,
        "currency": terms.amount.currency,
        "charge_created_at": terms.charge_created_at.isoformat(),
        "reason": terms.reason,
        "card": terms.card,
        "short": terms.short,
    }


def _refund_terms(stored: dict[str, Any]) -> RefundTerms:
    return RefundTerms(
        charge_id=stored["charge_id"],
        amount=_money(stored),
        charge_created_at=datetime.fromisoformat(stored["charge_created_at"]),
        reason=stored["reason"],
        card=stored.get("card") or "",
        short=stored.get("short") or "",
    )


def _plan_change_json(terms: PlanChangeTerms) -> dict[str, Any]:
    return {
        "subscription_id": terms.subscription_id,
        "target_price_id": terms.target_price_id,
        "target_name": terms.target_name,
        "old_name": terms.old_name,
        "features_gained": list(terms.features_gained),
        "short": terms.short,
    }


def _plan_change_terms(stored: dict[str, Any]) -> PlanChangeTerms:
    return PlanChangeTerms(
        subscription_id=stored["subscription_id"],
        target_price_id=stored["target_price_id"],
        target_name=stored["target_name"],
        old_name=stored["old_name"],
        features_gained=tuple(stored.get("features_gained") or ()),
        short=stored.get("short") or "",
    )


def _subscription_json(terms: CancelTerms | PauseTerms | ResumeTerms) -> dict[str, Any]:
    return {"subscription_id": terms.subscription_id, "plan": terms.plan, "short": terms.short}


def _retry_json(terms: RetryTerms) -> dict[str, Any]:
    return {"invoice_id": terms.invoice_id, "amount": terms.amount_text, "short": terms.short}


def _bundle_json(terms: InvoiceBundleTerms) -> dict[str, Any]:
    return {"period": terms.period, "invoices": [i.as_json() for i in terms.invoices]}


def _invoice(stored: dict[str, Any]) -> InvoiceRecord:
    return InvoiceRecord(
        invoice_id=stored["invoice_id"],
        number=stored["number"],
        status=stored["status"],
        amount_due=_money(stored["amount_due"]),
        amount_paid=_money(stored["amount_paid"]),
        created_at=datetime.fromisoformat(stored["created_at"]),
        pdf_url=stored["pdf_url"],
        hosted_url=stored["hosted_url"],
    )


_CODECS: Mapping[ProposalKind, _Codec] = {
    ProposalKind.REFUND: _Codec(_refund_json, _refund_terms),
    ProposalKind.CHANGE_PLAN: _Codec(_plan_change_json, _plan_change_terms),
    ProposalKind.CANCEL: _Codec(
        _subscription_json,
        lambda stored: CancelTerms(
            stored["subscription_id"], stored["plan"], stored.get("short") or ""
        ),
    ),
    ProposalKind.PAUSE: _Codec(
        _subscription_json,
        lambda stored: PauseTerms(
            stored["subscription_id"], stored["plan"], stored.get("short") or ""
        ),
    ),
    ProposalKind.RESUBSCRIBE: _Codec(
        lambda terms: {
            "subscription_id": terms.subscription_id,
            "target_price_id": terms.target_price_id,
            "target_name": terms.target_name,
            "old_name": terms.old_name,
            "short": terms.short,
        },
        lambda stored: ResubscribeTerms(
            stored["subscription_id"],
            stored["target_price_id"],
            stored["target_name"],
            stored["old_name"],
            stored.get("short") or "",
        ),
    ),
    ProposalKind.RESUME: _Codec(
        _subscription_json,
        lambda stored: ResumeTerms(
            stored["subscription_id"], stored["plan"], stored.get("short") or ""
        ),
    ),
    ProposalKind.RETRY_PAYMENT: _Codec(
        _retry_json,
        lambda stored: RetryTerms(
            stored["invoice_id"], stored.get("amount") or "", stored.get("short") or ""
        ),
    ),
    ProposalKind.EMAIL_INVOICES: _Codec(
        _bundle_json,
        lambda stored: InvoiceBundleTerms(
            stored["period"], tuple(_invoice(i) for i in stored["invoices"])
        ),
    ),
}


def _proposal(row: asyncpg.Record) -> Proposal:
    return Proposal(
        workspace_id=row["workspace_id"],
        conversation_id=row["conversation_id"],
        proposal_id=row["proposal_id"],
        contact_id=row["contact_id"],
        terms=_CODECS[ProposalKind(row["kind"])].from_json(json.loads(row["details"])),
        summary=row["summary"],
        state=ProposalState(row["state"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        terms_hash=row["terms_hash"],
        person_confirmed_at=row["person_confirmed_at"],
        person_confirmed_channel=row["person_confirmed_channel"],
    )


async def newest_proposal(
    connection: Connection, workspace_id: str, conversation_id: str
) -> Proposal | None:
    """The conversation's newest proposal, locked until the transaction ends."""
    row = await connection.fetchrow(queries.newest_proposal, workspace_id, conversation_id)
    return _proposal(row) if row is not None else None


async def proposal_by_id(
    connection: Connection, workspace_id: str, conversation_id: str, proposal_id: str
) -> Proposal | None:
    """One proposal of the conversation, locked until the transaction ends."""
    row = await connection.fetchrow(
        queries.proposal_by_id, workspace_id, conversation_id, proposal_id
    )
    return _proposal(row) if row is not None else None


async def newest_person_confirmed(
    connection: Connection, workspace_id: str, conversation_id: str, kind: ProposalKind
) -> Proposal | None:
    """The newest pending proposal of ``kind`` the person confirmed on the confirmation page."""
    row = await connection.fetchrow(
        queries.newest_person_confirmed, workspace_id, conversation_id, kind.value
    )
    return _proposal(row) if row is not None else None


async def proposal_by_confirm_token(connection: Connection, token_sha256: bytes) -> Proposal | None:
    """The proposal a confirmation page's token belongs to, locked."""
    row = await connection.fetchrow(queries.proposal_by_confirm_token, token_sha256)
    return _proposal(row) if row is not None else None


async def set_confirm_token(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    proposal_id: str,
    token_sha256: bytes,
) -> bool:
    """Gives a pending money proposal a confirmation page token; False when there is none."""
    found = await connection.fetchval(
        queries.set_confirm_token, workspace_id, conversation_id, proposal_id, token_sha256
    )
    return found is not None


async def mark_person_confirmed(connection: Connection, proposal: Proposal, channel: str) -> None:
    """Records that the person confirmed the proposal on ``channel`` (the first time counts)."""
    await connection.execute(
        queries.mark_person_confirmed,
        proposal.workspace_id,
        proposal.conversation_id,
        proposal.proposal_id,
        channel,
    )


async def set_proposal_state(
    connection: Connection,
    proposal: Proposal,
    state: ProposalState,
    result: dict[str, Any] | None = None,
) -> None:
    """Moves a proposal on, keeping what came of it."""
    await connection.execute(
        queries.set_proposal_state,
        proposal.workspace_id,
        proposal.conversation_id,
        proposal.proposal_id,
        state.value,
        json.dumps(result) if result is not None else None,
    )


async def lock_unverified_conversation(
    connection: Connection, workspace_id: str, conversation_id: str
) -> bool:
    """Takes the conversation's unverified hand-offs until the transaction ends, so that
    concurrent turns open one escalation between them; False when another holds them."""
    return bool(
        await connection.fetchval(
            queries.lock_unverified_conversation, workspace_id, conversation_id
        )
    )


async def newest_unverified_escalation(
    connection: Connection, workspace_id: str, conversation_id: str
) -> str | None:
    """The escalation last opened for an unverified visitor of the conversation."""
    found = await connection.fetchval(
        queries.newest_unverified_escalation, workspace_id, conversation_id
    )
    return str(found) if found is not None else None


async def record_unverified_escalation(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    escalation_id: str,
    emails_per_hour: int,
) -> bool:
    """Records an escalation opened for an unverified visitor; True when the agents may be
    emailed about it (the workspace sent fewer than ``emails_per_hour`` such emails in the
    last hour, counted under a per-workspace lock so that concurrent turns cannot overshoot).
    Call inside a transaction."""
    await connection.execute(queries.lock_unverified_emails, workspace_id)
    sent = await connection.fetchval(queries.count_unverified_emails, workspace_id, 3600.0)
    email = int(sent) < emails_per_hour
    await connection.execute(
        queries.insert_unverified_escalation, workspace_id, conversation_id, escalation_id, email
    )
    return email
