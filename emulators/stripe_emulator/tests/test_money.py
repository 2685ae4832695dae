"""Invoices (filters, PDF and hosted page), charges, payment intents, refunds, idempotency."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
import stripe

from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.conftest import close_http, make_client

Demo = tuple[stripe.StripeClient, dict[str, Any]]


async def test_invoice_history_filters_and_served_pdf_and_page(demo: Demo) -> None:
    client, summary = demo
    alice = summary["customers"]["alice@example.com"]
    invoices = await client.v1.invoices.list_async(
        params={"customer": alice["customer"], "limit": 100}
    )
    assert len(invoices.data) == 5
    assert {invoice.status for invoice in invoices.data} == {"paid"}
    created = sorted(invoice.created for invoice in invoices.data)
    recent = await client.v1.invoices.list_async(
        params={"customer": alice["customer"], "created": {"gte": created[2], "lte": created[3]}}
    )
    assert sorted(invoice.created for invoice in recent.data) == created[2:4]
    by_subscription = await client.v1.invoices.list_async(
        params={"subscription": alice["subscription"], "status": "paid", "limit": 100}
    )
    assert len(by_subscription.data) == 5
    newest = invoices.data[0]
    assert newest.invoice_pdf is not None and newest.hosted_invoice_url is not None
    async with aiohttp.ClientSession() as session:
        async with session.get(newest.invoice_pdf) as response:
            assert response.status == 200
            assert response.content_type == "application/pdf"
            assert (await response.read()).startswith(b"%PDF-")
        async with session.get(newest.hosted_invoice_url) as response:
            page = await response.text()
            assert response.status == 200
            assert str(newest.number) in page and newest.invoice_pdf in page


async def test_bob_was_charged_twice_for_the_same_amount_minutes_apart(demo: Demo) -> None:
    client, summary = demo
    bob = summary["customers"]["bob@example.com"]
    charges = await client.v1.charges.list_async(params={"customer": bob["customer"]})
    assert len(charges.data) == 2
    later, earlier = charges.data
    assert later.amount == earlier.amount == 1900
    assert 0 < later.created - earlier.created <= 10 * 60
    details = later.payment_method_details
    assert details is not None and details.card is not None
    assert (details.card.brand, details.card.last4) == ("mastercard", "4444")
    intent = await client.v1.payment_intents.retrieve_async(str(later.payment_intent))
    assert (intent.status, intent.latest_charge) == ("succeeded", later.id)


async def test_refund_bounds_partial_then_rest_then_already_refunded(demo: Demo) -> None:
    client, summary = demo
    bob = summary["customers"]["bob@example.com"]
    charge = (
        await client.v1.charges.list_async(params={"customer": bob["customer"], "limit": 1})
    ).data[0]
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await client.v1.refunds.create_async(params={"charge": charge.id, "amount": 1901})
    assert too_much.value.param == "amount"
    assert too_much.value.http_status == 400
    partial = await client.v1.refunds.create_async(
        params={"charge": charge.id, "amount": 500, "reason": "duplicate"}
    )
    assert (partial.amount, partial.status, partial.reason) == (500, "succeeded", "duplicate")
    after_partial = await client.v1.charges.retrieve_async(charge.id)
    assert (after_partial.amount_refunded, after_partial.refunded) == (500, False)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async(
            params={"payment_intent": str(charge.payment_intent), "amount": 1401}
        )
    rest = await client.v1.refunds.create_async(
        params={"payment_intent": str(charge.payment_intent)}
    )
    assert rest.amount == 1400
    refunded = await client.v1.charges.retrieve_async(charge.id)
    assert (refunded.amount_refunded, refunded.refunded) == (1900, True)
    assert sorted(refund.amount for refund in refunded.refunds.data) == [500, 1400]  # type: ignore[union-attr]
    with pytest.raises(stripe.InvalidRequestError) as again:
        await client.v1.refunds.create_async(params={"charge": charge.id, "amount": 1})
    assert again.value.code == "charge_already_refunded"
    listed = await client.v1.refunds.list_async(params={"charge": charge.id})
    assert len(listed.data) == 2


async def test_idempotency_replays_and_refuses_other_parameters(
    emulator: RunningEmulator, demo: Demo
) -> None:
    client, summary = demo
    bob = summary["customers"]["bob@example.com"]
    charge = (
        await client.v1.charges.list_async(params={"customer": bob["customer"], "limit": 1})
    ).data[0]
    key = f"refund-{uuid.uuid4()}"
    first = await client.v1.refunds.create_async(
        params={"charge": charge.id, "amount": 700}, options={"idempotency_key": key}
    )
    replay = await client.v1.refunds.create_async(
        params={"charge": charge.id, "amount": 700}, options={"idempotency_key": key}
    )
    assert replay.id == first.id
    assert replay.last_response is not None
    assert replay.last_response.headers.get("Idempotent-Replayed") == "true"
    assert (await client.v1.charges.retrieve_async(charge.id)).amount_refunded == 700
    with pytest.raises(stripe.IdempotencyError) as mismatch:
        await client.v1.refunds.create_async(
            params={"charge": charge.id, "amount": 800}, options={"idempotency_key": key}
        )
    assert mismatch.value.http_status == 400
    assert (await client.v1.charges.retrieve_async(charge.id)).amount_refunded == 700
    # Keys belong to one account: the same key elsewhere is a new request.
    other, other_http = make_client(emulator, "sk_test_other_idempotency")
    try:
        created = await other.v1.customers.create_async(
            params={"email": "x@example.com"}, options={"idempotency_key": key}
        )
        assert created.email == "x@example.com"
    finally:
        await close_http(other_http)


async def test_card_decline_is_replayed_under_the_same_key(client: stripe.StripeClient) -> None:
    customer = await client.v1.customers.create_async(params={"email": "d@example.com"})
    params: stripe.params.PaymentIntentCreateParams = {
        "amount": 2000,
        "currency": "usd",
        "customer": customer.id,
        "payment_method": "pm_card_chargeCustomerFail",
        "confirm": True,
    }
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            await client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": "same-decline"}
            )
        assert declined.value.code == "card_declined"
    assert len((await client.v1.charges.list_async(params={"customer": customer.id})).data) == 1


async def test_past_due_carol_and_upi_dev_and_trialing_erin(demo: Demo) -> None:
    client, summary = demo
    carol = summary["customers"]["carol@example.com"]
    carol_subscription = await client.v1.subscriptions.retrieve_async(carol["subscription"])
    assert carol_subscription.status == "past_due"
    open_invoices = await client.v1.invoices.list_async(
        params={"customer": carol["customer"], "status": "open"}
    )
    assert len(open_invoices.data) == 1
    with pytest.raises(stripe.CardError):
        await client.v1.invoices.pay_async(open_invoices.data[0].id)

    dev = summary["customers"]["dev@example.in"]
    subscription = await client.v1.subscriptions.retrieve_async(
        dev["subscription"], params={"expand": ["default_payment_method", "latest_invoice"]}
    )
    method = subscription.default_payment_method
    assert isinstance(method, stripe.PaymentMethod) and method.type == "upi"
    assert subscription.currency == "inr"
    assert subscription.payment_settings is not None
    assert subscription.payment_settings.payment_method_types == ["upi"]
    invoice = subscription.latest_invoice
    assert isinstance(invoice, stripe.Invoice) and invoice.payment_settings.default_mandate
    mandate = await client.v1.mandates.retrieve_async(invoice.payment_settings.default_mandate)
    assert (mandate.type, mandate.status, mandate.payment_method_details.type) == (
        "multi_use",
        "active",
        "upi",
    )

    erin = summary["customers"]["erin@example.com"]
    trialing = await client.v1.subscriptions.retrieve_async(erin["subscription"])
    assert trialing.status == "trialing" and trialing.trial_end is not None


async def test_portal_session_for_payment_method_update(
    emulator: RunningEmulator, demo: Demo
) -> None:
    client, summary = demo
    carol = summary["customers"]["carol@example.com"]
    session = await client.v1.billing_portal.sessions.create_async(
        params={
            "customer": carol["customer"],
            "return_url": "https://example.com/back",
            "flow_data": {"type": "payment_method_update"},
        }
    )
    assert session.flow is not None and session.flow.type == "payment_method_update"
    assert session.url.startswith(emulator.url)
    async with aiohttp.ClientSession() as http:
        async with http.get(session.url) as page:
            assert page.status == 200
        async with http.post(
            session.url, data={"payment_method": "pm_card_visa"}, allow_redirects=False
        ) as update:
            assert update.status == 303
            assert update.headers["Location"] == "https://example.com/back"
    invoice = (
        await client.v1.invoices.list_async(
            params={"customer": carol["customer"], "status": "open"}
        )
    ).data[0]
    paid = await client.v1.invoices.pay_async(invoice.id)
    assert paid.status == "paid"
    assert (await client.v1.subscriptions.retrieve_async(carol["subscription"])).status == "active"


async def test_customers_search_and_list_by_email_and_catalog(demo: Demo) -> None:
    client, summary = demo
    found = await client.v1.customers.search_async(params={"query": "email:'alice@example.com'"})
    assert [customer.id for customer in found.data] == [
        summary["customers"]["alice@example.com"]["customer"]
    ]
    assert (
        await client.v1.customers.search_async(params={"query": "email:'nobody@example.com'"})
    ).data == []
    listed = await client.v1.customers.list_async(params={"email": "bob@example.com"})
    assert [customer.id for customer in listed.data] == [
        summary["customers"]["bob@example.com"]["customer"]
    ]
    products = await client.v1.products.list_async(params={"active": True})
    tiers = {product.metadata["tier"]: product for product in products.data}
    assert set(tiers) == {"starter", "growth", "business"}
    assert len(tiers["business"].marketing_features) > len(tiers["starter"].marketing_features) > 0
    prices = await client.v1.prices.list_async(
        params={"product": tiers["growth"].id, "currency": "usd"}
    )
    assert [(price.unit_amount, price["recurring"]["interval"]) for price in prices.data] == [
        (4900, "month")
    ]  # type: ignore[union-attr]
    eur = await client.v1.prices.list_async(params={"lookup_keys": ["business_monthly_eur"]})
    assert [(price.currency, price.unit_amount) for price in eur.data] == [("eur", 19900)]
