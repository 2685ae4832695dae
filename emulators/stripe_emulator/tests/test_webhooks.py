"""Webhook endpoints, signed deliveries, retries, duplicates and reordering, events API."""

from __future__ import annotations

import json

import pytest
import stripe

from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.conftest import WebhookSink, admin
from stripe_emulator.tests.helpers import customer_on_clock, make_catalog


async def _endpoint(
    client: stripe.StripeClient, sink: WebhookSink, events: list[str]
) -> stripe.WebhookEndpoint:
    endpoint = await client.v1.webhook_endpoints.create_async(
        params={"url": sink.url, "enabled_events": events}  # type: ignore[typeddict-item]
    )
    assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
    return endpoint


async def test_endpoint_crud_returns_the_secret_only_on_create(client: stripe.StripeClient) -> None:
    endpoint = await client.v1.webhook_endpoints.create_async(
        params={"url": "https://example.com/hook", "enabled_events": ["charge.refunded"]}
    )
    assert endpoint.secret is not None
    fetched = await client.v1.webhook_endpoints.retrieve_async(endpoint.id)
    assert "secret" not in fetched
    updated = await client.v1.webhook_endpoints.update_async(
        endpoint.id, params={"enabled_events": ["*"], "disabled": True}
    )
    assert (updated.enabled_events, updated.status) == (["*"], "disabled")
    assert [found.id for found in (await client.v1.webhook_endpoints.list_async()).data] == [
        endpoint.id
    ]
    deleted = await client.v1.webhook_endpoints.delete_async(endpoint.id)
    assert deleted.deleted is True
    assert (await client.v1.webhook_endpoints.list_async()).data == []


async def test_deliveries_are_signed_and_verifiable_by_the_sdk(
    emulator: RunningEmulator, client: stripe.StripeClient, webhook_sink: WebhookSink
) -> None:
    endpoint = await _endpoint(client, webhook_sink, ["customer.created", "customer.updated"])
    customer = await client.v1.customers.create_async(params={"email": "hook@example.com"})
    await client.v1.customers.update_async(customer.id, params={"name": "Hook"})
    await client.v1.products.create_async(params={"name": "not subscribed"})
    await admin(emulator, "POST", "/webhooks/flush")
    assert len(webhook_sink.received) == 2
    assert endpoint.secret is not None
    verified = [
        stripe.Webhook.construct_event(body, signature, endpoint.secret)
        for body, signature in webhook_sink.received
    ]
    assert [event.type for event in verified] == ["customer.created", "customer.updated"]
    assert verified[1].data.object["name"] == "Hook"
    assert verified[1].data.previous_attributes.to_dict() == {"name": None}
    body, signature = webhook_sink.received[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, signature, "whsec_wrong_secret")
    # The same events are listed and retrievable through the API.
    listed = await client.v1.events.list_async(params={"type": "customer.updated"})
    assert [event.id for event in listed.data] == [verified[1].id]
    assert (await client.v1.events.retrieve_async(verified[0].id)).type == "customer.created"


async def test_failed_deliveries_are_retried(
    emulator: RunningEmulator, client: stripe.StripeClient, webhook_sink: WebhookSink
) -> None:
    webhook_sink.statuses = [500, 503]
    await _endpoint(client, webhook_sink, ["customer.created"])
    created = await client.v1.customers.create_async(params={"email": "retry@example.com"})
    await admin(emulator, "POST", "/webhooks/flush")
    await admin(emulator, "POST", "/webhooks/flush")
    await admin(emulator, "POST", "/webhooks/flush")
    ids = [json.loads(body)["data"]["object"]["id"] for body, _ in webhook_sink.received]
    assert ids == [created.id] * 3
    log = await admin(emulator, "GET", "/webhooks")
    assert [entry["status"] for entry in log["deliveries"]] == [500, 503, 200]
    event = await client.v1.events.retrieve_async(json.loads(webhook_sink.received[0][0])["id"])
    assert event.pending_webhooks == 0


async def test_duplicate_and_out_of_order_modes(
    emulator: RunningEmulator, client: stripe.StripeClient, webhook_sink: WebhookSink
) -> None:
    await _endpoint(client, webhook_sink, ["customer.created"])
    await admin(emulator, "POST", "/webhooks/mode", {"duplicates": True, "out_of_order": True})
    first = await client.v1.customers.create_async(params={"email": "one@example.com"})
    second = await client.v1.customers.create_async(params={"email": "two@example.com"})
    await admin(emulator, "POST", "/webhooks/flush")
    ids = [json.loads(body)["data"]["object"]["id"] for body, _ in webhook_sink.received]
    assert sorted(ids) == sorted([first.id, first.id, second.id, second.id])
    assert ids[0] == second.id


async def test_subscription_and_payment_events_carry_previous_attributes(
    emulator: RunningEmulator, client: stripe.StripeClient, webhook_sink: WebhookSink
) -> None:
    endpoint = await _endpoint(client, webhook_sink, ["*"])
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "events@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    await client.v1.subscriptions.update_async(
        subscription.id, params={"cancel_at_period_end": True}
    )
    charge = (await client.v1.charges.list_async(params={"customer": customer.id})).data[0]
    await client.v1.refunds.create_async(params={"charge": charge.id, "amount": 100})
    await client.v1.subscriptions.cancel_async(subscription.id)
    await admin(emulator, "POST", "/webhooks/flush")
    assert endpoint.secret is not None
    delivered = [
        stripe.Webhook.construct_event(body, signature, endpoint.secret)
        for body, signature in webhook_sink.received
    ]
    types = [event.type for event in delivered]
    for expected in (
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "charge.succeeded",
        "customer.subscription.updated",
        "charge.refunded",
        "customer.subscription.deleted",
    ):
        assert expected in types
    updated = next(event for event in delivered if event.type == "customer.subscription.updated")
    assert updated.data.previous_attributes["cancel_at_period_end"] is False
    refunded = next(event for event in delivered if event.type == "charge.refunded")
    assert refunded.data.object["amount_refunded"] == 100
    assert refunded.data.previous_attributes["amount_refunded"] == 0
    assert refunded.request is not None and refunded.request.id is not None
