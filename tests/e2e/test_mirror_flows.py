"""The whole system with the billing gateway's mirror of Stripe warm: a status turn through the
edge makes no Stripe request (counted at the emulator's request log)."""

from __future__ import annotations

from typing import Any

from askvault.billing.v1 import billing_pb2 as pb
from runtime import testing
from stripe_emulator import seed
from tests.e2e.conftest import WORKSPACE, Stack, eventually


async def _stripe_requests(stack: Stack) -> list[dict[str, Any]]:
    async with stack.http.get(
        f"{stack.stripe_url}/_emulator/requests", params={"api_key": seed.DEMO_API_KEY}
    ) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return list(body["requests"])


async def _mirror_warm(stack: Stack) -> bool:
    status = await stack.billing.GetMirrorStatus(
        pb.GetMirrorStatusRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata("admin-e2e"),
    )
    return bool(status.backfill_done)


async def test_a_status_turn_with_a_warm_mirror_makes_no_stripe_request(stack: Stack) -> None:
    await eventually(lambda: _mirror_warm(stack), timeout=30)
    # The first turn links the visitor to their Stripe customer (a customer search at Stripe).
    first = await stack.turn("alice", "What's my subscription status?")
    assert first["intent"] == "status" and "Growth" in first["reply"], first
    before = len(await _stripe_requests(stack))

    again = await stack.turn("alice", "What's my subscription status?", conversation="c2")
    assert again["reply"] == first["reply"]
    made = (await _stripe_requests(stack))[before:]
    assert made == [], made


async def test_a_warm_mirror_answers_the_status_while_stripe_is_down(stack: Stack) -> None:
    await eventually(lambda: _mirror_warm(stack), timeout=30)
    await stack.turn("bob", "What's my subscription status?")
    await stack.fault({"route": "*", "status": 503})
    answer = await stack.turn("bob", "What's my subscription status?", conversation="down")
    assert "Starter" in answer["reply"] and not answer["escalated"], answer
