"""The edge's storage of WhatsApp links and their proofs: the only module that runs that SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge.domain import whatsapp_proof
from runtime.database import Connection, Queries

queries = Queries("edge")


@dataclass(frozen=True)
class WhatsAppLink:
    """A WhatsApp number linked to a verified contact."""

    workspace_id: str
    whatsapp_number: str
    contact_id: str
    user_id: str
    email: str
    credential: bytes


async def find_whatsapp_link(
    connection: Connection, workspace_id: str, whatsapp_number: str
) -> WhatsAppLink | None:
    """The contact a WhatsApp number is proven and linked to (None while unproven)."""
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


@dataclass(frozen=True)
class WhatsAppChallenge:
    """A request to link a number, waiting for "LINK <code>" from it."""

    workspace_id: str
    challenge_id: str
    whatsapp_number: str
    contact_id: str
    user_id: str
    email: str
    credential: bytes
    code_key_id: str
    code_hmac: bytes
    wrong_codes: int
    created_at: datetime
    expires_at: datetime

    def judged(self) -> whatsapp_proof.Challenge:
        """What the pure judge needs of it."""
        return whatsapp_proof.Challenge(
            challenge_id=self.challenge_id,
            contact_id=self.contact_id,
            code_key_id=self.code_key_id,
            code_hmac=self.code_hmac,
            wrong_codes=self.wrong_codes,
            created_at=self.created_at,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True)
class WhatsAppLinkMessage:
    """An inbound "LINK <code>" message already handled, and what it achieved."""

    provider_message_id: str
    whatsapp_number: str
    outcome: str
    challenge_id: str
    ended_contact_id: str


@dataclass(frozen=True)
class CurrentWhatsAppLink:
    """The number's link row, proven or not."""

    contact_id: str
    challenge_id: str
    # None for a link made before proofs existed.
    proven_at: datetime | None


async def lock_whatsapp_number(connection: Connection, workspace_id: str, number: str) -> None:
    """Serialises proofs of one number until the transaction ends."""
    await connection.execute(queries.lock_whatsapp_number, workspace_id, number)


async def add_whatsapp_challenge(
    connection: Connection, challenge: WhatsAppChallenge, since: datetime, per_hour: int
) -> bool:
    """Stores a new challenge (superseding the contact's earlier one for the number) unless the
    contact already started ``per_hour`` challenges after ``since``; False then. Concurrent
    requests of one contact wait on each other, so the cap holds."""
    async with connection.transaction():
        await connection.execute(
            queries.lock_whatsapp_challenges_of_contact,
            challenge.workspace_id,
            challenge.contact_id,
        )
        started = await connection.fetchval(
            queries.count_whatsapp_challenges_since,
            challenge.workspace_id,
            challenge.contact_id,
            since,
        )
        if started >= per_hour:
            return False
        await connection.execute(
            queries.supersede_contact_whatsapp_challenges,
            challenge.workspace_id,
            challenge.contact_id,
            challenge.whatsapp_number,
            challenge.created_at,
        )
        await connection.execute(
            queries.insert_whatsapp_challenge,
            challenge.workspace_id,
            challenge.challenge_id,
            challenge.whatsapp_number,
            challenge.contact_id,
            challenge.user_id,
            challenge.email,
            challenge.credential,
            challenge.code_key_id,
            challenge.code_hmac,
            challenge.created_at,
            challenge.expires_at,
        )
    return True


async def pending_whatsapp_challenges(
    connection: Connection, workspace_id: str, number: str
) -> list[WhatsAppChallenge]:
    """The number's pending challenges, locked until the transaction ends."""
    rows = await connection.fetch(queries.pending_whatsapp_challenges, workspace_id, number)
    return [
        WhatsAppChallenge(
            workspace_id=row["workspace_id"],
            challenge_id=row["challenge_id"],
            whatsapp_number=row["whatsapp_number"],
            contact_id=row["contact_id"],
            user_id=row["user_id"],
            email=row["email"],
            credential=bytes(row["credential"]),
            code_key_id=row["code_key_id"],
            code_hmac=bytes(row["code_hmac"]),
            wrong_codes=row["wrong_codes"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )
        for row in rows
    ]


async def finish_whatsapp_challenges(
    connection: Connection,
    workspace_id: str,
    challenge_ids: Sequence[str],
    state: whatsapp_proof.ChallengeState,
    now: datetime,
) -> None:
    """Ends pending challenges in ``state``."""
    if challenge_ids:
        await connection.execute(
            queries.finish_whatsapp_challenges, workspace_id, list(challenge_ids), state.value, now
        )


async def count_wrong_whatsapp_codes(
    connection: Connection, workspace_id: str, challenge_ids: Sequence[str]
) -> None:
    """One more wrong code against each of the pending challenges."""
    if challenge_ids:
        await connection.execute(
            queries.count_wrong_whatsapp_codes, workspace_id, list(challenge_ids)
        )


async def supersede_number_whatsapp_challenges(
    connection: Connection, workspace_id: str, number: str, now: datetime
) -> None:
    """Ends every other pending challenge of a number that was just proven."""
    await connection.execute(
        queries.supersede_number_whatsapp_challenges, workspace_id, number, now
    )


async def claim_whatsapp_link_message(
    connection: Connection, workspace_id: str, provider_message_id: str, number: str
) -> WhatsAppLinkMessage | None:
    """Records an inbound LINK message as handled; None when it is new, else the earlier
    handling (a webhook delivered again). A concurrent second delivery waits for the first."""
    claimed = await connection.fetchval(
        queries.claim_whatsapp_link_message, workspace_id, provider_message_id, number
    )
    if claimed is not None:
        return None
    row = await connection.fetchrow(
        queries.get_whatsapp_link_message, workspace_id, provider_message_id
    )
    assert row is not None
    return WhatsAppLinkMessage(
        row["provider_message_id"],
        row["whatsapp_number"],
        row["outcome"],
        row["challenge_id"],
        row["ended_contact_id"],
    )


async def set_whatsapp_link_message_outcome(
    connection: Connection,
    workspace_id: str,
    provider_message_id: str,
    outcome: whatsapp_proof.Outcome,
    challenge_id: str = "",
    ended_contact_id: str = "",
) -> None:
    """What the LINK message achieved, for a later delivery of the same message."""
    await connection.execute(
        queries.set_whatsapp_link_message_outcome,
        workspace_id,
        provider_message_id,
        outcome.value,
        challenge_id,
        ended_contact_id,
    )


async def current_whatsapp_link(
    connection: Connection, workspace_id: str, number: str
) -> CurrentWhatsAppLink | None:
    """The number's link row, proven or not, locked until the transaction ends."""
    row = await connection.fetchrow(queries.current_whatsapp_link, workspace_id, number)
    if row is None:
        return None
    return CurrentWhatsAppLink(row["contact_id"], row["challenge_id"], row["proven_at"])


async def end_whatsapp_link(
    connection: Connection,
    workspace_id: str,
    number: str,
    contact_id: str,
    moved_to: str,
    challenge_id: str,
) -> None:
    """Ends the number's link to ``contact_id`` explicitly, recording why in the history."""
    await connection.execute(queries.end_whatsapp_link, workspace_id, number)
    await connection.execute(
        queries.record_whatsapp_link_event,
        workspace_id,
        number,
        contact_id,
        "ended",
        challenge_id,
        moved_to,
    )


async def add_proven_whatsapp_link(
    connection: Connection,
    link: WhatsAppLink,
    proven_at: datetime,
    challenge_id: str,
    moved_from: str,
) -> None:
    """Links a proven number (any earlier link of it must have been ended first)."""
    await connection.execute(
        queries.insert_proven_whatsapp_link,
        link.workspace_id,
        link.whatsapp_number,
        link.contact_id,
        link.user_id,
        link.email,
        link.credential,
        proven_at,
        challenge_id,
    )
    await connection.execute(
        queries.record_whatsapp_link_event,
        link.workspace_id,
        link.whatsapp_number,
        link.contact_id,
        "linked",
        challenge_id,
        moved_from,
    )
