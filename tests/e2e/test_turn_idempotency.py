"""A chat turn retried with its Idempotency-Key (the answer was lost to a network blip) gets
the first answer and moves no money again; the key with another turn, or in a stranger's
hands, is IDEMPOTENCY_MISMATCH."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import WORKSPACE, Stack, user_hash


async def _post(
    stack: Stack, visitor: dict[str, str], text: str, key: str
) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(
        f"{stack.edge_url}/v1/chat/turns",
        json={
            "workspace_id": WORKSPACE,
            "conversation_id": "c-keyed",
            "visitor": visitor,
            "text": text,
        },
        headers={"Idempotency-Key": key},
    ) as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


BOB = {"user_id": "bob", "email": "bob@example.com", "user_hash": user_hash("bob")}


async def test_a_retried_turn_gets_the_first_answer_and_refunds_once(stack: Stack) -> None:
    refunds_before = await stack.refunds()
    status, asked = await _post(stack, BOB, "Why was I charged twice?", "turn-1")
    assert status == 200 and asked["intent"] == "duplicate_charge", asked
    status, refunded = await _post(stack, BOB, "yes", "turn-2")
    assert status == 200 and "refunded $19" in refunded["reply"], refunded
    # The answer was lost; the client sends the same turn with the same key.
    status, again = await _post(stack, BOB, "yes", "turn-2")
    assert (status, again) == (200, refunded)
    new = [refund for refund in await stack.refunds() if refund not in refunds_before]
    assert [(r["amount"], r["status"]) for r in new] == [(1900, "succeeded")], new

    # The key with another text, or another claimed visitor: a mismatch, not an answer.
    status, other_text = await _post(stack, BOB, "no", "turn-2")
    assert (status, other_text["error"]["code"]) == (422, "IDEMPOTENCY_MISMATCH")
    alice = {"user_id": "alice", "email": "alice@example.com", "user_hash": user_hash("alice")}
    status, other_visitor = await _post(stack, alice, "yes", "turn-2")
    assert (status, other_visitor["error"]["code"]) == (422, "IDEMPOTENCY_MISMATCH")
    # Bob's claimed identity without his proof repeats the fingerprint but is not Bob.
    forged = {**BOB, "user_hash": "0" * 64}
    status, stranger = await _post(stack, forged, "yes", "turn-2")
    assert (status, stranger["error"]["code"]) == (422, "IDEMPOTENCY_MISMATCH")
    assert "refunded" not in str(stranger)


async def test_a_bad_key_is_refused(stack: Stack) -> None:
    status, body = await _post(stack, BOB, "hello", "has spaces")
    assert status == 400
    assert "Idempotency-Key" in body["error"]["fields"]
