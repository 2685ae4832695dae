"""A money action refused for overload is refused before anything is claimed: a "yes" turn
answered 503 OVERLOADED with Retry-After leaves no grant, operation or idempotency row and
no refund when policy is at its bound of calls in flight, and the same "yes" later refunds
once; with the billing gateway at its bound, the gateway claims nothing and the quote is not
spent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from runtime.admission import Admission
from tests.e2e.conftest import WORKSPACE, Stack, user_hash

# The rows a money action claims, by service schema.
_CLAIMS = {
    "policy.grants": "SELECT count(*) FROM policy.grants",
    "policy.idempotency_keys": "SELECT count(*) FROM policy.idempotency_keys",
    "billing_gateway.operations": "SELECT count(*) FROM billing_gateway.operations",
    "billing_gateway.idempotency_keys": "SELECT count(*) FROM billing_gateway.idempotency_keys",
}


async def _claims(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        return {name: int(await connection.fetchval(query)) for name, query in _CLAIMS.items()}
    finally:
        await connection.close()


@contextmanager
def _every_place_taken(admission: Admission) -> Iterator[None]:
    """Takes every free place of a server's bound, as calls in flight would, until the end."""
    held = 0
    while admission.try_enter():
        held += 1
    try:
        yield
    finally:
        for _ in range(held):
            admission.leave()


async def _yes(stack: Stack) -> tuple[int, str, dict[str, object]]:
    async with stack.http.post(
        f"{stack.edge_url}/v1/chat/turns",
        json={
            "workspace_id": WORKSPACE,
            "conversation_id": "c1",
            "visitor": {
                "user_id": "bob",
                "email": "bob@example.com",
                "user_hash": user_hash("bob"),
            },
            "text": "yes",
        },
    ) as response:
        return response.status, response.headers.get("Retry-After", ""), await response.json()


async def test_a_yes_refused_by_an_overloaded_policy_claims_nothing_and_later_refunds_once(
    stack: Stack, database_url: str
) -> None:
    refunds_before = await stack.refunds()
    asked = await stack.turn("bob", "Why was I charged twice?")
    assert any(action["type"] == "confirm" for action in asked["actions"]), asked
    claims_before = await _claims(database_url)

    with _every_place_taken(stack.policy_server.admission):
        status, retry_after, body = await _yes(stack)

    assert status == 503, body
    assert body["error"]["code"] == "OVERLOADED", body  # type: ignore[index]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert await _claims(database_url) == claims_before
    assert [r for r in await stack.refunds() if r not in refunds_before] == []

    # The same "yes" once the load has passed: the refund is made, once.
    refunded = await stack.turn("bob", "yes")
    assert "refunded $19" in refunded["reply"], refunded
    new = [r for r in await stack.refunds() if r not in refunds_before]
    assert [(r["amount"], r["status"]) for r in new] == [(1900, "succeeded")], new
    after = await _claims(database_url)
    assert after["billing_gateway.operations"] == claims_before["billing_gateway.operations"] + 1


async def test_a_yes_refused_by_an_overloaded_gateway_moves_no_money_nor_spends_the_quote(
    stack: Stack, database_url: str
) -> None:
    """Policy granted before the gateway refused: the gateway claimed nothing (no operation,
    no key), no refund was made, and the quote is not spent as if the write had failed."""
    refunds_before = await stack.refunds()
    await stack.turn("bob", "Why was I charged twice?")
    claims_before = await _claims(database_url)

    with _every_place_taken(stack.billing_server.admission):
        status, retry_after, body = await _yes(stack)

    assert status == 503, body
    assert body["error"]["code"] == "OVERLOADED", body  # type: ignore[index]
    assert retry_after.isdigit()
    claimed = await _claims(database_url)
    for table in ("billing_gateway.operations", "billing_gateway.idempotency_keys"):
        assert claimed[table] == claims_before[table], table
    assert [r for r in await stack.refunds() if r not in refunds_before] == []
    connection = await asyncpg.connect(database_url)
    try:
        states = await connection.fetch("SELECT state FROM edge.proposals")
    finally:
        await connection.close()
    assert [row["state"] for row in states] == ["confirming"], states
