"""The edge's storage: the only module that runs the edge's SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from edge.domain.proposals import Proposal, ProposalKind, ProposalState
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


@dataclass(frozen=True)
class WhatsAppLink:
    """A WhatsApp number linked to a verified contact."""

    workspace_id: str
    whatsapp_number: str
    contact_id: str
    user_id: str
    email: str
    credential: bytes


async def claim_conversation(
    connection: Connection, workspace_id: str, conversation_id: str, channel: str, contact_id: str
) -> str:
    """Creates the conversation or marks it active, making ``contact_id`` (when set) its owner
    if it has none; the owner afterwards ('' while no verified contact has written)."""
    owner: str = await connection.fetchval(
        queries.claim_conversation, workspace_id, conversation_id, channel, contact_id
    )
    return owner


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
    kind: ProposalKind,
    details: dict[str, Any],
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
            kind.value,
            json.dumps(details),
            summary,
            expires_at,
            terms_hash,
            confirm_token_sha256,
        )


def _proposal(row: asyncpg.Record) -> Proposal:
    return Proposal(
        workspace_id=row["workspace_id"],
        conversation_id=row["conversation_id"],
        proposal_id=row["proposal_id"],
        contact_id=row["contact_id"],
        kind=ProposalKind(row["kind"]),
        details=json.loads(row["details"]),
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


async def proposal_by_confirm_token(connection: Connection, token_sha256: bytes) -> Proposal | None:
    """The proposal a confirmation page's token belongs to, locked."""
    row = await connection.fetchrow(queries.proposal_by_confirm_token, token_sha256)
    return _proposal(row) if row is not None else None


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


async def link_whatsapp(connection: Connection, link: WhatsAppLink) -> None:
    """Links a WhatsApp number to a contact (a later link of the number replaces it)."""
    await connection.execute(
        queries.link_whatsapp,
        link.workspace_id,
        link.whatsapp_number,
        link.contact_id,
        link.user_id,
        link.email,
        link.credential,
    )


async def find_whatsapp_link(
    connection: Connection, workspace_id: str, whatsapp_number: str
) -> WhatsAppLink | None:
    """The contact a WhatsApp number is linked to."""
    row = await connection.fetchrow(queries.find_whatsapp_link, workspace_id, whatsapp_number)
    if row is None:
        return None
    return WhatsAppLink(
        row["workspace_id"],
        row["whatsapp_number"],
        row["contact_id"],
        row["user_id"],
        row["email"],
        bytes(row["credential"]),
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
