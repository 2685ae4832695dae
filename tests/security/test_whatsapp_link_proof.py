"""A WhatsApp number is linked to a contact only when its holder proves it (issue 13, item 5).

The chat gives a verified visitor a one-time code; only a signed inbound WhatsApp message
"LINK <code>" from that number links it. Until then the number's messages are not the
visitor's turns, nothing about the account is sent to it and no opt-in is recorded. Runs
the whole system (tests/e2e/conftest.py) with the WhatsApp emulator.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from askvault.identity.v1 import identity_pb2
from tests.e2e.conftest import (
    PHONE_NUMBER_ID,
    WORKSPACE,
    Stack,
    eventually,
    running_stack,
    user_hash,
)
from whatsapp_emulator import app as whatsapp_app

# A stranger's number: nobody in the workspace holds it.
STRANGER_NUMBER = "+14155550999"
ALICE_NUMBER = "+14155550177"
CAROL_NUMBER = "+14155550123"
LINKED_TEXT = "now linked to your account"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """The whole system, the e2e workspace provisioned."""
    async with running_stack(database_url) as running:
        yield running


async def _rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def _contact_id(stack: Stack, user: str) -> str:
    answer = await stack.identity.VerifyVisitor(
        identity_pb2.VerifyVisitorRequest(
            workspace_id=WORKSPACE,
            user_id=user,
            email=f"{user}@example.com",
            user_hash=user_hash(user),
        ),
        timeout=5,
    )
    return str(answer.contact.contact_id)


async def _ask_code(stack: Stack, user: str, number: str, conversation: str = "link") -> str:
    reply = await stack.turn(
        user, f"send my billing messages to WhatsApp {number}", conversation=conversation
    )
    assert reply["intent"] == "whatsapp_opt_in", reply
    match = re.search(r"LINK (\d{8})", reply["reply"])
    assert match is not None, reply
    assert "Done" not in reply["reply"], reply
    return match.group(1)


async def _from_number(stack: Stack, number: str, text: str) -> dict[str, Any]:
    """A signed inbound text message from ``number``; the webhook body (to post again)."""
    body = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, number, "Holder", text, "")
    status, answer = await stack.post_whatsapp(body)
    assert status == 200, answer
    return body


async def _link(database_url: str, number: str) -> list[asyncpg.Record]:
    return await _rows(
        database_url,
        "SELECT * FROM edge.whatsapp_links WHERE workspace_id = $1 AND whatsapp_number = $2",
        WORKSPACE,
        number,
    )


async def _consent(database_url: str, contact_id: str) -> asyncpg.Record | None:
    rows = await _rows(
        database_url,
        "SELECT * FROM notifier.channel_consents"
        " WHERE workspace_id = $1 AND contact_id = $2 AND channel = 'whatsapp'",
        WORKSPACE,
        contact_id,
    )
    return rows[0] if rows else None


async def _queued_to(database_url: str, number: str) -> list[asyncpg.Record]:
    """Every message the notifier accepted for the number (Send stores before it answers)."""
    return await _rows(
        database_url,
        "SELECT * FROM notifier.messages WHERE workspace_id = $1 AND recipient_whatsapp = $2",
        WORKSPACE,
        number,
    )


async def _delivered_to(stack: Stack, number: str, text: str) -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]]:
        return [
            message
            for message in await stack.whatsapp_messages()
            if message["to"].lstrip("+") == number.lstrip("+") and text in str(message)
        ]

    delivered: list[dict[str, Any]] = await eventually(found)
    return delivered


async def _challenges(database_url: str, number: str) -> list[asyncpg.Record]:
    return await _rows(
        database_url,
        "SELECT * FROM edge.whatsapp_link_challenges"
        " WHERE workspace_id = $1 AND whatsapp_number = $2 ORDER BY created_at",
        WORKSPACE,
        number,
    )


async def test_a_named_number_is_not_linked_without_proof(stack: Stack, database_url: str) -> None:
    """The attack: Alice names a stranger's number. Nothing is linked, no opt-in is recorded,
    the stranger's messages are not Alice's turns and nothing about her account goes there."""
    alice = await _contact_id(stack, "alice")
    reply = await stack.turn(
        "alice", f"send my billing messages to WhatsApp {STRANGER_NUMBER}", conversation="atk"
    )
    assert reply["intent"] == "whatsapp_opt_in", reply
    await _from_number(stack, STRANGER_NUMBER, "what's my subscription status?")
    await _from_number(stack, STRANGER_NUMBER, "invoices for the last 3 months")

    assert await _link(database_url, STRANGER_NUMBER) == []
    consent = await _consent(database_url, alice)
    assert consent is None or not consent["opted_in"], dict(consent or {})
    assert await _queued_to(database_url, STRANGER_NUMBER) == []
    assert await stack.whatsapp_messages() == []
    bot_lines = await _rows(
        database_url,
        "SELECT text FROM edge.messages WHERE workspace_id = $1"
        " AND conversation_id LIKE 'wa:%' AND author = 'bot'",
        WORKSPACE,
    )
    assert bot_lines, "the stranger's messages were answered as an anonymous visitor"
    for line in bot_lines:
        assert "Growth" not in line["text"] and "in_" not in line["text"], line["text"]
    assert "Done" not in reply["reply"] and "LINK " in reply["reply"], reply


async def test_the_code_from_the_number_links_it(stack: Stack, database_url: str) -> None:
    alice = await _contact_id(stack, "alice")
    code = await _ask_code(stack, "alice", ALICE_NUMBER)
    (challenge,) = await _challenges(database_url, ALICE_NUMBER)
    assert code.encode() not in bytes(challenge["code_hmac"])
    assert challenge["state"] == "pending"
    assert 590 <= (challenge["expires_at"] - challenge["created_at"]).total_seconds() <= 610

    await _from_number(stack, ALICE_NUMBER, f"LINK {code}")

    (link,) = await _link(database_url, ALICE_NUMBER)
    assert link["contact_id"] == alice and link["proven_at"] is not None
    consent = await _consent(database_url, alice)
    assert consent is not None and consent["opted_in"], consent
    assert consent["source"] == "whatsapp_link_proof"
    assert consent["whatsapp_number"] == ALICE_NUMBER
    await _delivered_to(stack, ALICE_NUMBER, LINKED_TEXT)
    (challenge,) = await _challenges(database_url, ALICE_NUMBER)
    assert challenge["state"] == "proven"
    # The LINK message is never a chat turn (its code stays out of the transcript).
    lines = await _rows(database_url, "SELECT text FROM edge.messages WHERE text LIKE 'LINK %'")
    assert lines == []

    # Now the number's messages are Alice's turns.
    await _from_number(stack, ALICE_NUMBER, "what's my subscription status?")
    await _delivered_to(stack, ALICE_NUMBER, "Growth plan")


async def test_wrong_codes_void_the_challenge(stack: Stack, database_url: str) -> None:
    alice = await _contact_id(stack, "alice")
    code = await _ask_code(stack, "alice", ALICE_NUMBER)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for attempt in range(1, 5):
        await _from_number(stack, ALICE_NUMBER, f"LINK {wrong}")
        (challenge,) = await _challenges(database_url, ALICE_NUMBER)
        assert (challenge["state"], challenge["wrong_codes"]) == ("pending", attempt)
    await _from_number(stack, ALICE_NUMBER, "link 1234")  # the fifth wrong code
    (challenge,) = await _challenges(database_url, ALICE_NUMBER)
    assert challenge["state"] == "void"

    await _from_number(stack, ALICE_NUMBER, f"LINK {code}")  # right, but too late
    assert await _link(database_url, ALICE_NUMBER) == []
    assert await _consent(database_url, alice) is None
    assert await _queued_to(database_url, ALICE_NUMBER) == []


async def test_an_expired_code_does_not_link(stack: Stack, database_url: str) -> None:
    alice = await _contact_id(stack, "alice")
    code = await _ask_code(stack, "alice", ALICE_NUMBER)
    # Drive the clock: the code's ten minutes are over.
    await _rows(
        database_url,
        "UPDATE edge.whatsapp_link_challenges SET expires_at = now() - interval '1 second'",
    )
    await _from_number(stack, ALICE_NUMBER, f"LINK {code}")
    assert await _link(database_url, ALICE_NUMBER) == []
    assert await _consent(database_url, alice) is None
    (challenge,) = await _challenges(database_url, ALICE_NUMBER)
    assert challenge["state"] == "expired"

    # A new code works.
    fresh = await _ask_code(stack, "alice", ALICE_NUMBER)
    await _from_number(stack, ALICE_NUMBER, f"LINK {fresh}")
    (link,) = await _link(database_url, ALICE_NUMBER)
    assert link["contact_id"] == alice


async def test_a_linked_number_moves_only_with_proof(stack: Stack, database_url: str) -> None:
    alice = await _contact_id(stack, "alice")
    carol = await _contact_id(stack, "carol")
    carol_code = await _ask_code(stack, "carol", CAROL_NUMBER, conversation="carol")
    await _from_number(stack, CAROL_NUMBER, f"LINK {carol_code}")
    await _delivered_to(stack, CAROL_NUMBER, LINKED_TEXT)

    # Alice names Carol's number: it stays Carol's, and Carol's messages stay Carol's turns.
    alice_code = await _ask_code(stack, "alice", CAROL_NUMBER)
    (link,) = await _link(database_url, CAROL_NUMBER)
    assert link["contact_id"] == carol
    await _from_number(stack, CAROL_NUMBER, "what plan am I on?")
    await _delivered_to(stack, CAROL_NUMBER, "Growth plan")
    turns = await _rows(
        database_url,
        "SELECT conversation_id FROM edge.messages WHERE text = 'what plan am I on?'",
    )
    assert [t["conversation_id"] for t in turns] == [f"wa:{CAROL_NUMBER}:{carol}"], turns
    consent = await _consent(database_url, alice)
    assert consent is None or not consent["opted_in"]

    # The number's holder sends Alice's code: the number moves, Carol's link ends explicitly.
    await _from_number(stack, CAROL_NUMBER, f"LINK {alice_code}")
    (link,) = await _link(database_url, CAROL_NUMBER)
    assert link["contact_id"] == alice
    events = await _rows(
        database_url,
        "SELECT contact_id, event, other_contact_id FROM edge.whatsapp_link_events"
        " WHERE whatsapp_number = $1 ORDER BY sequence",
        CAROL_NUMBER,
    )
    assert [tuple(e) for e in events] == [
        (carol, "linked", ""),
        (carol, "ended", alice),
        (alice, "linked", carol),
    ]
    carol_consent = await _consent(database_url, carol)
    assert carol_consent is not None and not carol_consent["opted_in"]
    assert carol_consent["source"] == "whatsapp_link_moved"
    alice_consent = await _consent(database_url, alice)
    assert alice_consent is not None and alice_consent["opted_in"]


async def test_a_link_message_delivered_twice_links_once(stack: Stack, database_url: str) -> None:
    alice = await _contact_id(stack, "alice")
    code = await _ask_code(stack, "alice", ALICE_NUMBER)
    wrong_code = f"{(int(code) + 1) % 10**8:08d}"
    wrong = await _from_number(stack, ALICE_NUMBER, f"LINK {wrong_code}")
    status, _ = await stack.post_whatsapp(wrong)  # Meta retries the same message
    assert status == 200
    (challenge,) = await _challenges(database_url, ALICE_NUMBER)
    assert challenge["wrong_codes"] == 1

    right = await _from_number(stack, ALICE_NUMBER, f"LINK {code}")
    status, _ = await stack.post_whatsapp(right)
    assert status == 200
    (link,) = await _link(database_url, ALICE_NUMBER)
    assert link["contact_id"] == alice
    events = await _rows(
        database_url, "SELECT event FROM edge.whatsapp_link_events WHERE contact_id = $1", alice
    )
    assert [e["event"] for e in events] == ["linked"]
    history = await _rows(
        database_url,
        "SELECT * FROM notifier.channel_consent_history WHERE contact_id = $1",
        alice,
    )
    assert len(history) == 1, history
    queued = [
        row
        for row in await _queued_to(database_url, ALICE_NUMBER)
        if LINKED_TEXT in row["variables"]
    ]
    assert len(queued) == 1, queued


async def test_link_codes_per_contact_are_capped(stack: Stack, database_url: str) -> None:
    for _ in range(5):
        await _ask_code(stack, "alice", ALICE_NUMBER)
    refused = await stack.turn(
        "alice", f"send my billing messages to WhatsApp {ALICE_NUMBER}", conversation="link"
    )
    assert re.search(r"LINK \d{8}", refused["reply"]) is None, refused
    assert "try again later" in refused["reply"], refused
    states = [c["state"] for c in await _challenges(database_url, ALICE_NUMBER)]
    assert states == ["superseded"] * 4 + ["pending"], states
