"""WhatsApp keywords: the keyword alone counts, a sentence that contains it does not."""

from __future__ import annotations

import pytest

from edge.domain.whatsapp_keywords import Keyword, keyword


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", Keyword.STOP),
        ("stop!", Keyword.STOP),
        (" Unsubscribe ", Keyword.STOP),
        ("opt-out", Keyword.STOP),
        ("START", Keyword.START),
        ("Start.", Keyword.START),
        ("HELP", Keyword.HELP),
        ("help?", Keyword.HELP),
        ("stop my subscription", None),
        ("help me cancel my plan", None),
        ("start a new plan", None),
        ("", None),
        ("STOP " * 20, None),
    ],
)
def test_keyword_alone(text: str, expected: Keyword | None) -> None:
    assert keyword(text) is expected
