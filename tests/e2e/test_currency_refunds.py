"""A refund in a currency without hundredths: the amount a visitor or a tool names is counted in
the charge's own unit (¥50 is 50 yen, not 5,000)."""

from __future__ import annotations

from tests.e2e.conftest import Stack


async def _yen_charge(stack: Stack, amount_minor: int) -> str:
    """A fresh charge in yen on alice's card, mirrored by the gateway."""
    alice = stack.customer("alice@example.com")
    intent = await stack.stripe.v1.payment_intents.create_async(
        {
            "amount": amount_minor,
            "currency": "jpy",
            "customer": alice["customer"],
            "payment_method": alice["payment_method"],
            "confirm": True,
        }
    )
    await stack.flush_webhooks()
    return str(intent["latest_charge"])


async def test_a_tool_refund_of_50_on_a_yen_charge_is_50_yen(stack: Stack) -> None:
    charge = await _yen_charge(stack, 5000)
    status, body = await stack.tool("alice", "request_refund", {"charge_id": charge, "amount": 50})
    assert status == 200, body
    # Yen have a default cap now, so policy asks for the person's yes; the amount it names
    # (50 yen, not the 5,000-yen charge and not 5,000 "minor units") is the point.
    message = str(body["message"])
    assert body["status"] == "needs_confirmation", body
    assert "refund ¥50 " in message and "refund ¥5,000" not in message, body


async def test_a_typed_refund_of_yen_is_counted_in_yen(stack: Stack) -> None:
    charge = await _yen_charge(stack, 5000)
    answer = await stack.turn("alice", f"please refund ¥50 of {charge}", conversation="yen")
    assert "refund ¥50 " in answer["reply"], answer
    assert "refund ¥5,000" not in answer["reply"], answer
    finer = await stack.turn("alice", f"refund 50.5 JPY of {charge}", conversation="yen-finer")
    assert "smallest unit of JPY" in finer["reply"], finer
