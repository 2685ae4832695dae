"""Proof that a visitor holds a WhatsApp number before it is linked to their contact.

The chat gives the verified visitor a one-time code; the number's holder sends
``LINK <code>`` from that number to the business number. WhatsApp itself vouches for the
sender (the webhook is signed), so a right code from the number proves that whoever holds
the number is the visitor who asked. Only an HMAC of the code is stored; wrong codes from
the number count against each of its pending challenges and void them at the limit.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

# Eight digits: easy to type on a phone, and with a few wrong codes allowed per challenge a
# guess succeeds with odds of about 5 in 100 million.
CODE_DIGITS = 8
# What an inbound message that tries to prove a number looks like: "LINK 1234 5678",
# "link: 12345678". Anything else from the number is an ordinary message.
_LINK_MESSAGE = re.compile(r"^\s*link\b[\s:#-]*([\d][\d \-]{0,40})\s*$", re.IGNORECASE)
# Separates the HMAC key of link codes from every other use of the encryption keys.
_KEY_LABEL = b"askvault/edge/whatsapp-link-code/v1"


class ChallengeState(enum.Enum):
    """The life of a challenge."""

    PENDING = "pending"
    PROVEN = "proven"
    VOID = "void"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


class Outcome(enum.Enum):
    """What one inbound LINK message achieved."""

    # The code matched a live challenge: the number is now linked to its contact.
    LINKED = "linked"
    # Live challenges exist but the code matched none (each counted one wrong code).
    WRONG_CODE = "wrong_code"
    # The wrong code was the last one allowed: the number's challenges are void.
    VOID = "void"
    # No live challenge for the number (never asked, expired, voided or already used).
    NO_CHALLENGE = "no_challenge"


@dataclass(frozen=True)
class Challenge:
    """A pending challenge, as the judge needs it."""

    challenge_id: str
    contact_id: str
    code_key_id: str
    code_hmac: bytes
    wrong_codes: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Judgement:
    """The outcome of a LINK message and what it does to the number's pending challenges."""

    outcome: Outcome
    # The challenge the code proved (LINKED only).
    proven: Challenge | None = None
    # Challenges past their expiry, to be marked expired.
    expired: tuple[str, ...] = ()
    # Challenges that count one more wrong code (still pending).
    counted: tuple[str, ...] = ()
    # Challenges voided by this wrong code.
    voided: tuple[str, ...] = ()


class CodeKeys:
    """The HMAC keys of link codes, one per SECRETS_ENCRYPTION_KEYS key (the first is
    current), so a challenge made before a key rotation still checks with its own key."""

    def __init__(self, spec: str) -> None:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, _, material = item.partition(":")
            raw = base64.b64decode(material)
            keys[key_id] = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()
            order.append(key_id)
        if not order:
            raise ValueError("at least one encryption key is required")
        self._keys = keys
        self.current = order[0]

    def digest(self, key_id: str, binding: str, code: str) -> bytes:
        """HMAC of the code bound to its challenge; empty when the key is not configured."""
        key = self._keys.get(key_id)
        if key is None:
            return b""
        return hmac.new(key, f"{binding}/{code}".encode(), hashlib.sha256).digest()


def new_code() -> str:
    """A fresh one-time code."""
    return "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))


def binding(workspace_id: str, challenge_id: str, whatsapp_number: str) -> str:
    """What a code's HMAC is bound to: a code only proves its own challenge and number."""
    return f"{workspace_id}/{challenge_id}/{whatsapp_number}"


def link_code(text: str) -> str | None:
    """The code of a "LINK <code>" message (digits only, possibly of the wrong length), or
    None when the text is not such a message."""
    match = _LINK_MESSAGE.match(text)
    if match is None:
        return None
    return re.sub(r"\D", "", match.group(1))


def judge(
    challenges: Sequence[Challenge],
    code: str,
    now: datetime,
    max_wrong_codes: int,
    keys: CodeKeys,
    workspace_id: str,
    whatsapp_number: str,
) -> Judgement:
    """Decides a LINK message from ``whatsapp_number`` against the number's pending challenges.
    Every live challenge's HMAC is compared in constant time; the newest match wins."""
    expired = tuple(c.challenge_id for c in challenges if c.expires_at <= now)
    live = [c for c in challenges if c.expires_at > now]
    if not live:
        return Judgement(Outcome.NO_CHALLENGE, expired=expired)
    matched = None
    for challenge in sorted(live, key=lambda c: c.created_at):
        expected = challenge.code_hmac
        actual = keys.digest(
            challenge.code_key_id,
            binding(workspace_id, challenge.challenge_id, whatsapp_number),
            code,
        )
        if len(code) == CODE_DIGITS and actual and hmac.compare_digest(actual, expected):
            matched = challenge
    if matched is not None:
        return Judgement(Outcome.LINKED, proven=matched, expired=expired)
    voided = tuple(c.challenge_id for c in live if c.wrong_codes + 1 >= max_wrong_codes)
    counted = tuple(c.challenge_id for c in live if c.challenge_id not in voided)
    outcome = Outcome.WRONG_CODE if counted else Outcome.VOID
    return Judgement(outcome, expired=expired, counted=counted, voided=voided)
