"""Linking a WhatsApp number to a verified contact, only once the number's holder proved it.

``opt_in`` (a chat turn's answer) ``start``s a challenge and gives the visitor a one-time code;
``prove`` (from a signed inbound WhatsApp message "LINK <code>") checks the code, links the
number, ends any earlier link of it explicitly, records the opt-in with the notifier and
answers on WhatsApp. Until then the number gets nothing about the account and its messages
are not the contact's turns. The rules live in ``domain.whatsapp_proof``.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from askvault.notifier.v1 import notifier_pb2 as npb
from edge import whatsapp_replies, whatsapp_storage
from edge.domain import whatsapp_proof
from edge.domain.whatsapp_proof import ChallengeState, Outcome
from edge.peers import Peers, error_reason
from edge.settings import EdgeSettings
from edge.turn import Action, Context, Reply, TurnDeps
from edge.whatsapp_consent import set_consent
from runtime import ids
from runtime.database import Connection
from runtime.secretbox import SecretBox

logger = logging.getLogger(__name__)

# The notifier's consent source for an opt-in proven by the number's holder.
CONSENT_SOURCE = "whatsapp_link_proof"
# The consent source that withdraws an earlier contact's opt-in when its number moved.
MOVED_SOURCE = "whatsapp_link_moved"


class Started(enum.Enum):
    """What asking to link a number led to."""

    CHALLENGED = "challenged"
    ALREADY_LINKED = "already_linked"
    TOO_MANY = "too_many"


@dataclass(frozen=True)
class Challenge:
    """The code the visitor must send from the number, and until when it works."""

    started: Started
    code: str = ""
    expires_at: datetime | None = None


def code_keys(settings: EdgeSettings) -> whatsapp_proof.CodeKeys | None:
    """The HMAC keys of link codes (from SECRETS_ENCRYPTION_KEYS); None disables linking."""
    spec = settings.secrets_encryption_keys.get_secret_value()
    return whatsapp_proof.CodeKeys(spec) if spec else None


def credential_binding(workspace_id: str, number: str) -> str:
    """What a sealed user_hash of a WhatsApp link is bound to."""
    return f"{workspace_id}/whatsapp/{number}"


def wa_me_url(business_number: str, code: str) -> str:
    """A link that opens WhatsApp with "LINK <code>" typed to the business number."""
    digits = "".join(ch for ch in business_number if ch.isdigit())
    return f"https://wa.me/{digits}?text={quote(f'LINK {code}')}"


_PHONE = re.compile(r"\+?\d[\d ()-]{7,18}\d")


async def opt_in(deps: TurnDeps, context: Context, text: str) -> Reply:
    """Starts linking the WhatsApp number in ``text``: nothing is linked and no opt-in is
    recorded until a signed message from that number brings back the code shown here."""
    match = _PHONE.search(text)
    visitor = context.request.visitor
    if match is None or deps.secret_box is None or not visitor.user_hash:
        return Reply(whatsapp_replies.NO_WHATSAPP_HERE)
    number = "+" + re.sub(r"\D", "", match.group(0))
    challenge = await start(
        deps.pool,
        deps.settings,
        deps.secret_box,
        workspace_id=context.workspace_id,
        contact_id=context.contact.contact_id,
        user_id=visitor.user_id,
        email=visitor.email,
        user_hash=visitor.user_hash,
        number=number,
        now=context.now,
    )
    if challenge.started is Started.ALREADY_LINKED:
        return Reply(
            whatsapp_replies.whatsapp_already_linked(number),
            data={"whatsapp_number": number, "linked": True},
        )
    if challenge.started is Started.TOO_MANY:
        return Reply(
            whatsapp_replies.TOO_MANY_LINK_CODES,
            data={"whatsapp_number": number, "linked": False},
            status="denied",
        )
    business = deps.settings.whatsapp_business_number
    minutes = max(1, round(deps.settings.whatsapp_link_code_ttl_seconds / 60))
    actions = []
    if business:
        actions.append(
            Action(
                "link", whatsapp_replies.OPEN_WHATSAPP, {"url": wa_me_url(business, challenge.code)}
            )
        )
    return Reply(
        whatsapp_replies.send_link_code(number, business, challenge.code, minutes),
        actions=actions,
        data={
            "whatsapp_number": number,
            "linked": False,
            "link_message": f"LINK {challenge.code}",
            "expires_at": challenge.expires_at.isoformat() if challenge.expires_at else "",
        },
    )


def open_credential(secret_box: SecretBox | None, link: whatsapp_storage.WhatsAppLink) -> str:
    """The user_hash a proven WhatsApp number was linked with ("" without a secret box)."""
    if secret_box is None:
        return ""
    return secret_box.open(
        link.credential, credential_binding(link.workspace_id, link.whatsapp_number)
    ).decode()


async def start(
    pool: asyncpg.Pool,
    settings: EdgeSettings,
    secret_box: SecretBox,
    *,
    workspace_id: str,
    contact_id: str,
    user_id: str,
    email: str,
    user_hash: str,
    number: str,
    now: datetime,
) -> Challenge:
    """A new challenge for the contact to prove ``number`` (or why there is none)."""
    keys = code_keys(settings)
    assert keys is not None, "linking needs SECRETS_ENCRYPTION_KEYS (checked by the caller)"
    async with pool.acquire() as connection:
        linked = await whatsapp_storage.find_whatsapp_link(connection, workspace_id, number)
        if linked is not None and linked.contact_id == contact_id:
            return Challenge(Started.ALREADY_LINKED)
        code = whatsapp_proof.new_code()
        challenge_id = ids.new_id("walink")
        expires_at = now + timedelta(seconds=settings.whatsapp_link_code_ttl_seconds)
        stored = await whatsapp_storage.add_whatsapp_challenge(
            connection,
            whatsapp_storage.WhatsAppChallenge(
                workspace_id=workspace_id,
                challenge_id=challenge_id,
                whatsapp_number=number,
                contact_id=contact_id,
                user_id=user_id,
                email=email,
                credential=secret_box.seal(
                    user_hash.encode(), credential_binding(workspace_id, number)
                ),
                code_key_id=keys.current,
                code_hmac=keys.digest(
                    keys.current,
                    whatsapp_proof.binding(workspace_id, challenge_id, number),
                    code,
                ),
                wrong_codes=0,
                created_at=now,
                expires_at=expires_at,
            ),
            since=now - timedelta(hours=1),
            per_hour=settings.whatsapp_link_challenges_per_hour,
        )
    if not stored:
        logger.info("whatsapp link code refused: too many", extra={"contact_id": contact_id})
        return Challenge(Started.TOO_MANY)
    logger.info(
        "whatsapp link code issued",
        extra={"contact_id": contact_id, "challenge_id": challenge_id},
    )
    return Challenge(Started.CHALLENGED, code, expires_at)


@dataclass(frozen=True)
class _Settled:
    """What a LINK message achieved, enough to finish its side effects (again, on a retry)."""

    outcome: Outcome
    challenge_id: str = ""
    contact_id: str = ""
    ended_contact_id: str = ""
    proven_at: datetime | None = None


async def prove(
    pool: asyncpg.Pool,
    settings: EdgeSettings,
    peers: Peers,
    *,
    workspace_id: str,
    number: str,
    code: str,
    provider_message_id: str,
    now: datetime,
) -> Outcome:
    """Handles a signed inbound "LINK <code>" from ``number``: links it when the code is right,
    counts a wrong code otherwise, and answers on WhatsApp where the number may be written to.
    The same message delivered again changes nothing more."""
    keys = code_keys(settings)
    if keys is None:
        return Outcome.NO_CHALLENGE
    message_id = provider_message_id or ids.new_id("wa_no_id")
    async with pool.acquire() as connection, connection.transaction():
        await whatsapp_storage.lock_whatsapp_number(connection, workspace_id, number)
        earlier = await whatsapp_storage.claim_whatsapp_link_message(
            connection, workspace_id, message_id, number
        )
        if earlier is not None:
            settled = await _earlier(connection, workspace_id, number, earlier)
        else:
            settled = await _judge(connection, settings, keys, workspace_id, number, code, now)
            await whatsapp_storage.set_whatsapp_link_message_outcome(
                connection,
                workspace_id,
                message_id,
                settled.outcome,
                settled.challenge_id,
                settled.ended_contact_id,
            )
    if earlier is not None and settled.outcome is not Outcome.LINKED:
        # Counted and answered the first time.
        return settled.outcome
    if settled.outcome is Outcome.LINKED:
        await _record_consents(settings, peers, workspace_id, number, settled, message_id, now)
    await _reply(pool, peers, workspace_id, number, settled.outcome, message_id)
    return settled.outcome


async def _earlier(
    connection: Connection,
    workspace_id: str,
    number: str,
    earlier: whatsapp_storage.WhatsAppLinkMessage,
) -> _Settled:
    """A message handled before: its outcome; a link is finished again only while it stands."""
    outcome = Outcome(earlier.outcome) if earlier.outcome else Outcome.NO_CHALLENGE
    if outcome is not Outcome.LINKED:
        return _Settled(outcome)
    current = await whatsapp_storage.current_whatsapp_link(connection, workspace_id, number)
    if current is None or current.challenge_id != earlier.challenge_id:
        # The number moved on since: finishing this proof again would undo that.
        return _Settled(Outcome.NO_CHALLENGE)
    return _Settled(
        Outcome.LINKED,
        earlier.challenge_id,
        current.contact_id,
        earlier.ended_contact_id,
        current.proven_at,
    )


async def _judge(
    connection: Connection,
    settings: EdgeSettings,
    keys: whatsapp_proof.CodeKeys,
    workspace_id: str,
    number: str,
    code: str,
    now: datetime,
) -> _Settled:
    pending = await whatsapp_storage.pending_whatsapp_challenges(connection, workspace_id, number)
    judgement = whatsapp_proof.judge(
        [challenge.judged() for challenge in pending],
        code,
        now,
        settings.whatsapp_link_max_wrong_codes,
        keys,
        workspace_id,
        number,
    )
    await whatsapp_storage.finish_whatsapp_challenges(
        connection, workspace_id, judgement.expired, ChallengeState.EXPIRED, now
    )
    await whatsapp_storage.count_wrong_whatsapp_codes(connection, workspace_id, judgement.counted)
    await whatsapp_storage.finish_whatsapp_challenges(
        connection, workspace_id, judgement.voided, ChallengeState.VOID, now
    )
    if judgement.voided:
        logger.warning(
            "whatsapp link codes voided after wrong codes",
            extra={"challenge_ids": list(judgement.voided)},
        )
    if judgement.proven is None:
        return _Settled(judgement.outcome)
    proven = next(c for c in pending if c.challenge_id == judgement.proven.challenge_id)
    await whatsapp_storage.finish_whatsapp_challenges(
        connection, workspace_id, [proven.challenge_id], ChallengeState.PROVEN, now
    )
    await whatsapp_storage.supersede_number_whatsapp_challenges(
        connection, workspace_id, number, now
    )
    ended = ""
    current = await whatsapp_storage.current_whatsapp_link(connection, workspace_id, number)
    if current is not None:
        if current.contact_id != proven.contact_id:
            ended = current.contact_id
            logger.warning(
                "whatsapp link ended: another contact proved the number",
                extra={
                    "ended_contact_id": current.contact_id,
                    "contact_id": proven.contact_id,
                    "challenge_id": proven.challenge_id,
                    "was_proven": current.proven_at is not None,
                },
            )
        await whatsapp_storage.end_whatsapp_link(
            connection,
            workspace_id,
            number,
            current.contact_id,
            moved_to=proven.contact_id,
            challenge_id=proven.challenge_id,
        )
    await whatsapp_storage.add_proven_whatsapp_link(
        connection,
        whatsapp_storage.WhatsAppLink(
            workspace_id,
            number,
            proven.contact_id,
            proven.user_id,
            proven.email,
            proven.credential,
        ),
        proven_at=now,
        challenge_id=proven.challenge_id,
        moved_from=ended,
    )
    logger.info(
        "whatsapp number linked after proof",
        extra={"contact_id": proven.contact_id, "challenge_id": proven.challenge_id},
    )
    return _Settled(Outcome.LINKED, proven.challenge_id, proven.contact_id, ended, now)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def _record_consents(
    settings: EdgeSettings,
    peers: Peers,
    workspace_id: str,
    number: str,
    settled: _Settled,
    message_id: str,
    now: datetime,
) -> None:
    """The proven contact's opt-in, the earlier contact's opt-out for the number, and the
    inbound message (it opens the WhatsApp window the reply needs). Each call is idempotent
    (keys and times derived from the challenge), so a redelivered message may run them again."""
    occurred_at = _timestamp(settled.proven_at or now)
    try:
        if settled.ended_contact_id:
            consents = await peers.notifier.GetChannelConsent(
                npb.GetChannelConsentRequest(
                    workspace_id=workspace_id, contact_id=settled.ended_contact_id
                ),
                timeout=peers.timeout(),
            )
            if any(
                c.channel == npb.CHANNEL_WHATSAPP and c.opted_in and c.whatsapp_number == number
                for c in consents.consents
            ):
                await set_consent(
                    peers,
                    workspace_id,
                    settled.ended_contact_id,
                    number,
                    opted_in=False,
                    source=MOVED_SOURCE,
                    occurred_at=occurred_at,
                    key=f"edge:wa-moved:{settled.challenge_id}",
                )
        await set_consent(
            peers,
            workspace_id,
            settled.contact_id,
            number,
            opted_in=True,
            source=CONSENT_SOURCE,
            occurred_at=occurred_at,
            key=f"edge:wa-proof:{settled.challenge_id}",
        )
        await peers.notifier.RecordInboundWhatsApp(
            npb.RecordInboundWhatsAppRequest(
                workspace_id=workspace_id,
                contact_id=settled.contact_id,
                whatsapp_number=number,
                received_at=_timestamp(now),
                provider_message_id=message_id,
            ),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as failure:
        # The link stands; a redelivery of the message records the consents again.
        logger.warning(
            "whatsapp link consent not recorded",
            extra={"code": failure.code().name, "reason": error_reason(failure)},
        )


async def _reply(
    pool: asyncpg.Pool,
    peers: Peers,
    workspace_id: str,
    number: str,
    outcome: Outcome,
    message_id: str,
) -> None:
    """Answers on WhatsApp, only to a number proven by some contact (the notifier sends only
    with that contact's consent); an unproven number gets nothing."""
    async with pool.acquire() as connection:
        link = await whatsapp_storage.find_whatsapp_link(connection, workspace_id, number)
    if link is None:
        logger.info(
            "whatsapp link answer not sent: number not proven", extra={"outcome": outcome.value}
        )
        return
    try:
        await peers.notifier.Send(
            npb.SendRequest(
                workspace_id=workspace_id,
                recipient=npb.Recipient(contact_id=link.contact_id, whatsapp_number=number),
                template=npb.TEMPLATE_CHAT_REPLY,
                channel=npb.CHANNEL_WHATSAPP,
                variables={"text": whatsapp_replies.WHATSAPP_LINK_OUTCOMES[outcome]},
                dedup_key=f"edge:wa-link:{message_id}",
            ),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as failure:
        logger.warning("whatsapp link answer not queued", extra={"code": failure.code().name})
