"""Card numbers typed into chat are masked before anything is stored, logged or sent on; so
are WhatsApp link codes, which prove a number only while nobody but its holder knows them
(agents read stored transcripts)."""

from __future__ import annotations

import re

from runtime import logs

# 13 to 19 digits, optionally grouped by single spaces or dashes (as people type cards).
_CARD_CANDIDATE = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
CARD_MASK = "[card number removed]"
# "LINK 1234 5678" as shown in the chat, and its URL-encoded form in the wa.me link.
_LINK_CODE = re.compile(r"(LINK(?:\s+|%20|\+))\d(?:[\d ]{0,12}\d)?", re.IGNORECASE)
LINK_CODE_MASK = "[code removed]"


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check (every payment card number does)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return CARD_MASK
    return match.group(0)


def redact_cards(text: str) -> str:
    """Replaces Luhn-valid 13-19 digit runs (card numbers) with a mask."""
    return _CARD_CANDIDATE.sub(_mask, text)


def contains_card(text: str) -> bool:
    """Whether the text holds something that looks like a card number."""
    return redact_cards(text) != text


def redact_link_codes(text: str) -> str:
    """Replaces the code of "LINK <code>" with a mask."""
    return _LINK_CODE.sub(lambda match: match.group(1) + LINK_CODE_MASK, text)


def redact(text: str) -> str:
    """Card numbers, link codes, then API keys, webhook secrets and tokens (the runtime's log
    masking)."""
    return logs.redact(redact_link_codes(redact_cards(text)))
