"""Card numbers typed into chat are masked before anything is stored, logged or sent on; so
are WhatsApp link codes, which prove a number only while nobody but its holder knows them
(agents read stored transcripts)."""

from __future__ import annotations

import re

from runtime import cards, logs

CARD_MASK = "[card number removed]"
# "LINK 1234 5678" as shown in the chat, and its URL-encoded form in the wa.me link.
_LINK_CODE = re.compile(r"(LINK(?:\s+|%20|\+))\d(?:[\d ]{0,12}\d)?", re.IGNORECASE)
LINK_CODE_MASK = "[code removed]"


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check (every payment card number does)."""
    return cards.luhn_valid(digits)


def redact_cards(text: str) -> str:
    """Replaces card numbers (Luhn-valid 13-19 digit runs, their digit groups joined by any
    separators or spacing) with a mask."""
    return cards.redact(text, CARD_MASK)


def contains_card(text: str) -> bool:
    """Whether the text holds something that looks like a card number."""
    return cards.contains(text)


def redact_link_codes(text: str) -> str:
    """Replaces the code of "LINK <code>" with a mask."""
    return _LINK_CODE.sub(lambda match: match.group(1) + LINK_CODE_MASK, text)


def redact(text: str) -> str:
    """Card numbers, link codes, then API keys, webhook secrets and tokens (the runtime's log
    masking)."""
    return logs.redact(redact_link_codes(redact_cards(text)))
