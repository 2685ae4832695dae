"""Checkout Sessions in subscription mode: created through the SDK, completed on the hosted
page with a new UPI mandate, the subscription made and the completion announced."""

from __future__ import annotations

from typing import Any

import aiohttp
import stripe

from stripe_emulator.app import RunningEmulator


async def test_a_checkout_session_subscribes_with_a_new_upi_mandate(
    emulator: RunningEmulator, demo: tuple[stripe.StripeClient, dict[str, Any]]
) -> None:
    client, summary = demo
    dev = summary["customers"]["dev@example.in"]
    business_inr = summary["products"]["business"]["prices"]["inr"]
    # UPI is newer than the SDK's typed parameters.
    create: Any = {
        "mode": "subscription",
        "customer": dev["customer"],
        "line_items": [{"price": business_inr, "quantity": 1}],
        "payment_method_types": ["upi"],
        "subscription_data": {"metadata": {"replaces": dev["subscription"]}},
        "metadata": {"why": "test"},
    }
    session = await client.v1.checkout.sessions.create_async(params=create)
    assert session.status == "open" and session.url and session.subscription is None
    assert session.amount_total == 1599900 and session.currency == "inr"
    async with aiohttp.ClientSession() as http:
        async with http.get(session.url) as page:
            assert page.status == 200 and "mandate" in await page.text()
        async with http.post(session.url, data={"vpa": "dev@okicici"}) as done:
            assert done.status == 200, await done.text()
        async with http.post(session.url, data={"vpa": "dev@okicici"}) as again:
            assert again.status == 409
    completed = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert completed.status == "complete" and completed.subscription
    subscription = await client.v1.subscriptions.retrieve_async(str(completed.subscription))
    assert subscription.status == "active", subscription
    assert subscription.metadata["replaces"] == dev["subscription"]
    assert subscription["items"].data[0].price.id == business_inr
    method = await client.v1.payment_methods.retrieve_async(
        str(subscription.default_payment_method)
    )
    assert method.type == "upi" and method.upi is not None and method.upi.vpa == "dev@okicici"
    kinds = [event.type for event in (await client.v1.events.list_async({"limit": 100})).data]
    assert "checkout.session.completed" in kinds
    assert "customer.subscription.created" in kinds
