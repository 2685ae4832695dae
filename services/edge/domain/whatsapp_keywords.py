"""The WhatsApp keywords a number's holder sends on their own: STOP (no more WhatsApp
messages), START (messages again) and HELP (a person). Only the keyword alone counts
("stop", "STOP!", "Unsubscribe"); "stop my subscription" is a chat turn like any other."""

from __future__ import annotations

import enum
import re


class Keyword(enum.Enum):
    """A keyword and what it asks for."""

    STOP = "stop"
    START = "start"
    HELP = "help"


_KEYWORDS = {
    "stop": Keyword.STOP,
    "stop all": Keyword.STOP,
    "unsubscribe": Keyword.STOP,
    "opt out": Keyword.STOP,
    "start": Keyword.START,
    "unstop": Keyword.START,
    "opt in": Keyword.START,
    "help": Keyword.HELP,
}
_NOT_A_LETTER = re.compile(r"[^a-z]+")


def keyword(text: str) -> Keyword | None:
    """The keyword the whole message is, or None."""
    words = _NOT_A_LETTER.sub(" ", text.lower()).split()
    if not words or len(words) > 2 or len(text) > 40:
        return None
    return _KEYWORDS.get(" ".join(words))
