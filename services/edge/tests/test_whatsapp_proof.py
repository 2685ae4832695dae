"""The pure rules of proving a WhatsApp number: which messages are LINK messages and how a
code is judged against the number's pending challenges."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from edge.domain import whatsapp_proof
from edge.domain.whatsapp_proof import Challenge, CodeKeys, Outcome

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
KEYS = CodeKeys(
    "k2:" + base64.b64encode(b"2" * 32).decode() + ",k1:" + base64.b64encode(b"1" * 32).decode()
)
NUMBER = "+14155550177"


def _challenge(
    challenge_id: str,
    code: str,
    *,
    key_id: str = "k2",
    wrong: int = 0,
    expires_in: int = 600,
    age: int = 0,
) -> Challenge:
    return Challenge(
        challenge_id=challenge_id,
        contact_id=f"ct_{challenge_id}",
        code_key_id=key_id,
        code_hmac=KEYS.digest(key_id, whatsapp_proof.binding("ws", challenge_id, NUMBER), code),
        wrong_codes=wrong,
        created_at=NOW - timedelta(seconds=age),
        expires_at=NOW + timedelta(seconds=expires_in),
    )


def _judge(challenges: list[Challenge], code: str) -> whatsapp_proof.Judgement:
    return whatsapp_proof.judge(challenges, code, NOW, 5, KEYS, "ws", NUMBER)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("LINK 12345678", "12345678"),
        ("link: 1234 5678", "12345678"),
        ("  Link #1234-5678 ", "12345678"),
        ("LINK 12", "12"),
        ("link my account please", None),
        ("what's my plan?", None),
        ("LINKS 12345678", None),
    ],
)
def test_link_messages_are_recognised(text: str, code: str | None) -> None:
    assert whatsapp_proof.link_code(text) == code


def test_new_codes_are_eight_digits() -> None:
    codes = {whatsapp_proof.new_code() for _ in range(50)}
    assert all(len(code) == 8 and code.isdigit() for code in codes)
    assert len(codes) > 45


def test_the_right_code_proves_its_challenge_only() -> None:
    mine, other = _challenge("a", "11112222"), _challenge("b", "33334444")
    judgement = _judge([mine, other], "11112222")
    assert judgement.outcome is Outcome.LINKED and judgement.proven == mine
    # A code is bound to its challenge and number: the same digits for another number fail.
    elsewhere = whatsapp_proof.judge([mine], "11112222", NOW, 5, KEYS, "ws", "+14155550000")
    assert elsewhere.outcome is Outcome.WRONG_CODE


def test_a_challenge_made_before_a_key_rotation_still_checks() -> None:
    assert _judge([_challenge("a", "11112222", key_id="k1")], "11112222").outcome is Outcome.LINKED
    unknown = _challenge("a", "11112222", key_id="k0")
    assert _judge([unknown], "11112222").outcome is Outcome.WRONG_CODE


def test_wrong_codes_count_and_void_at_the_limit() -> None:
    judgement = _judge([_challenge("a", "11112222", wrong=3), _challenge("b", "1", wrong=4)], "9")
    assert judgement.outcome is Outcome.WRONG_CODE
    assert judgement.counted == ("a",) and judgement.voided == ("b",)
    last = _judge([_challenge("a", "11112222", wrong=4)], "00000000")
    assert last.outcome is Outcome.VOID and last.voided == ("a",)


def test_expired_challenges_prove_nothing() -> None:
    judgement = _judge([_challenge("a", "11112222", expires_in=0)], "11112222")
    assert judgement.outcome is Outcome.NO_CHALLENGE and judgement.expired == ("a",)
    assert _judge([], "11112222").outcome is Outcome.NO_CHALLENGE
