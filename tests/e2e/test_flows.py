"""End-to-end flows over HTTP with every service and the Stripe emulator running."""

from __future__ import annotations

from tests.e2e.conftest import Stack


async def test_status_for_a_verified_visitor(stack: Stack) -> None:
    answer = await stack.turn("alice", "What's my subscription status?")
    assert answer["intent"] == "status"
    assert "You're on the Growth plan ($49/month)." in answer["reply"]
    assert "Next billing date:" in answer["reply"]
    assert "$49 paid" in answer["reply"]
    assert answer["escalated"] is False
