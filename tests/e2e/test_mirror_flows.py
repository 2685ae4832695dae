"""The whole system with the billing gateway's mirror of Stripe warm: a status turn through the
edge makes no Stripe request (counted at the emulator's request log)."""

from __future__ import annotations

from typing import Any

from askvault.billing.v1 import billing_pb2 as pb
from runtime import testing
from stripe_emulator import seed
from tests.e2e.conftest import WORKSPACE, Stack, eventually
from tests.e2e.test_self_serve_prices import _assertion


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


async def test_a_charge_made_moments_ago_is_found_before_its_webhook_arrives(
    stack: Stack,
) -> None:
    await eventually(lambda: _mirror_warm(stack), timeout=30)
    await stack.turn("alice", "What's my subscription status?")  # linked
    async with stack.http.post(
        f"{stack.stripe_url}/_emulator/webhooks/mode", json={"enabled": False}
    ) as response:
        assert response.status < 300
    customer = stack.customer("alice@example.com")
    found = await stack.stripe.v1.customers.retrieve_async(customer["customer"])
    method = found["invoice_settings"]["default_payment_method"]
    intent = await stack.stripe.v1.payment_intents.create_async(
        {
            "amount": 1234,
            "currency": "usd",
            "customer": customer["customer"],
            "payment_method": method if isinstance(method, str) else method["id"],
            "confirm": True,
        }
    )
    charge_id = str(intent["latest_charge"])
    # The mirror has not heard of it (its webhook is held back); the list from the mirror
    # lacks it, and the charge asked for by id is read from Stripe.
    listed = await stack.billing.ListCharges(
        pb.ListChargesRequest(
            workspace_id=WORKSPACE, identity_assertion=(await _assertion(stack, "alice"))[0]
        )
    )
    assert listed.origin.source == pb.READ_SOURCE_MIRROR
    assert charge_id not in {charge.charge_id for charge in listed.charges}
    offer = await stack.turn("alice", f"please refund {charge_id}", conversation="fresh")
    assert "$12.34" in offer["reply"] and "Shall I go ahead?" in offer["reply"], offer
    # Another customer's charge by id is not found, and says nothing about it.
    other = await stack.turn("bob", f"please refund {charge_id}", conversation="not-bobs")
    assert "12.34" not in other["reply"] and "Shall I go ahead?" not in other["reply"], other
