"""Payment card numbers in free text, found however they are written.

People type a card as one run of digits or in groups, and the groups may be joined by anything:
spaces (one or several), dashes, dots, slashes, underscores, line breaks, or a mix. A card is a
Luhn-valid run of 13 to 19 digits; so every stretch of consecutive digit groups that holds 13-19
digits and passes the check is masked, whatever separates the groups. A card always starts and
ends on a group boundary (where digits meet a separator or text), so looking only at whole
groups finds it even when other numbers sit next to it ("order 12, card 4242.4242..."), and
ordinary numbers (dates, amounts, phone numbers, ids) stay unless they happen to pass the check.
"""

from __future__ import annotations

import re

# A digit group, or the run of up to three non-alphanumeric characters between two groups.
_GROUP = re.compile(r"\d+")
_SEPARATOR = re.compile(r"[^0-9A-Za-z]{1,3}")
MIN_DIGITS = 13
MAX_DIGITS = 19


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


def _card_spans(text: str) -> list[tuple[int, int]]:
    """The character spans of card numbers, overlapping ones merged."""
    groups = [match.span() for match in _GROUP.finditer(text)]
    spans: list[tuple[int, int]] = []
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            if last > first and not _SEPARATOR.fullmatch(
                text, groups[last - 1][1], groups[last][0]
            ):
                break
            digits += text[groups[last][0] : groups[last][1]]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                start, end = groups[first][0], groups[last][1]
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
                else:
                    spans.append((start, end))
    return spans


def redact(text: str, mask: str) -> str:
    """The text with every card number replaced by ``mask``."""
    pieces: list[str] = []
    position = 0
    for start, end in _card_spans(text):
        pieces.append(text[position:start])
        pieces.append(mask)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def contains(text: str) -> bool:
    """Whether the text holds a card number."""
    return bool(_card_spans(text))
