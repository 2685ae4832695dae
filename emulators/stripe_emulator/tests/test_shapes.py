"""Every served object has the keys and value types of Stripe's official example object."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.helpers import customer_on_clock, make_catalog

FIXTURES = Path(
    os.environ.get(
        "STRIPE_FIXTURES",
        # A copy of Stripe's official example objects (shared/stripe/fixtures3.json).
        Path(__file__).resolve().parent / "fixtures" / "stripe_fixtures3.json",
    )
)

# Keys real Stripe sends that the example object leaves out (documented in README.md).
EXTRA_KEYS = {
    "event.data.previous_attributes",
    "event.account",
    "payment_intent.last_payment_error.code",
    "payment_intent.last_payment_error.decline_code",
    "payment_intent.last_payment_error.message",
    "payment_intent.last_payment_error.charge",
    "payment_intent.last_payment_error.payment_method",
    "invoiceitem.parent.subscription_details.subscription_item",
    "mandate.payment_method_details.upi.currency",
}
# Free-form maps whose keys are data, not schema.
FREE_MAPS = {"metadata", "previous_attributes"}
# Objects embedded in others that are checked against their own example instead.
OWN_SHAPES = {"event.data.object"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def shape_problems(ours: Any, example: Any, path: str) -> list[str]:
    """Differences in keys and types; null on either side is accepted (nullable fields)."""
    if ours is None or example is None:
        return []
    if isinstance(example, dict) and isinstance(ours, dict):
        if path.rsplit(".", 1)[-1] in FREE_MAPS or path in OWN_SHAPES:
            return []
        problems = []
        # A `type` discriminator names the one type-specific hash that is present.
        ours_type, example_type = ours.get("type"), example.get("type")
        for key in ours:
            if key not in example and f"{path}.{key}" not in EXTRA_KEYS and key != ours_type:
                problems.append(f"unexpected key {path}.{key}")
        for key in example:
            if key not in ours and key != example_type:
                problems.append(f"missing key {path}.{key}")
        for key in ours.keys() & example.keys():
            problems += shape_problems(ours[key], example[key], f"{path}.{key}")
        return problems
    if isinstance(example, list) and isinstance(ours, list):
        if not example:
            return []
        return [
            problem for item in ours for problem in shape_problems(item, example[0], f"{path}[]")
        ]
    if _json_type(ours) != _json_type(example):
        return [f"{path}: {_json_type(ours)} where the example has {_json_type(example)}"]
    return []


def test_shape_check_catches_wrong_types_and_unknown_keys() -> None:
    example = {"id": "x", "amount": 1, "nested": {"flag": True}, "metadata": {}}
    assert (
        shape_problems(
            {"id": "y", "amount": 2, "nested": {"flag": False}, "metadata": {"a": "b"}},
            example,
            "o",
        )
        == []
    )
    assert shape_problems(
        {"id": "y", "amount": "2", "nested": {"flag": False}, "metadata": {}}, example, "o"
    ) == ["o.amount: str where the example has number"]
    assert "unexpected key o.nested.other" in shape_problems(
        {"id": "y", "amount": 2, "nested": {"flag": True, "other": 1}, "metadata": {}}, example, "o"
    )


async def test_every_resource_matches_the_official_example(
    emulator: RunningEmulator, demo: tuple[stripe.StripeClient, dict[str, Any]]
) -> None:
    examples = json.loads(FIXTURES.read_text())["resources"]
    client, summary = demo
    alice = summary["customers"]["alice@example.com"]
    dev = summary["customers"]["dev@example.in"]
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "shape@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    await client.v1.subscriptions.update_async(
        subscription.id,
        params={"items": [{"id": subscription["items"].data[0].id, "price": catalog.business.id}]},
    )
    charge = (await client.v1.charges.list_async(params={"customer": alice["customer"]})).data[0]
    refund = await client.v1.refunds.create_async(params={"charge": charge.id, "amount": 100})
    declined_customer = await client.v1.customers.create_async(
        params={"email": "declined@example.com"}
    )
    with pytest.raises(stripe.CardError) as declined:
        await client.v1.payment_intents.create_async(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": declined_customer.id,
                "payment_method": "pm_card_chargeCustomerFail",
                "confirm": True,
            }
        )
    failed_intent = declined.value.json_body["error"]["payment_intent"]  # type: ignore[index]
    endpoint = await client.v1.webhook_endpoints.create_async(
        params={"url": "https://example.com/h", "enabled_events": ["*"]}
    )
    dev_invoice = (await client.v1.invoices.list_async(params={"customer": dev["customer"]})).data[
        0
    ]
    # UPI is newer than the SDK's typed parameters.
    checkout_params: Any = {
        "mode": "subscription",
        "customer": dev["customer"],
        "line_items": [{"price": catalog.growth.id, "quantity": 1}],
        "payment_method_types": ["upi"],
        "success_url": "https://example.com/done",
    }
    served: dict[str, list[Any]] = {
        "customer": [await client.v1.customers.retrieve_async(alice["customer"])],
        "product": (await client.v1.products.list_async()).data,
        "price": (await client.v1.prices.list_async(params={"limit": 100})).data,
        "subscription": [
            await client.v1.subscriptions.retrieve_async(alice["subscription"]),
            await client.v1.subscriptions.retrieve_async(subscription.id),
        ],
        "subscription_item": [
            await client.v1.subscription_items.retrieve_async(subscription["items"].data[0].id)
        ],
        "invoice": (await client.v1.invoices.list_async(params={"limit": 100})).data,
        "line_item": (await client.v1.invoices.line_items.list_async(dev_invoice.id)).data,
        "invoiceitem": (await client.v1.invoice_items.list_async()).data,
        "invoice_payment": (
            await client.v1.invoice_payments.list_async(params={"limit": 100})
        ).data,
        "payment_intent": [
            *(await client.v1.payment_intents.list_async(params={"limit": 100})).data,
            failed_intent,
        ],
        "charge": (await client.v1.charges.list_async(params={"limit": 100})).data,
        "refund": [refund],
        "payment_method": (
            await client.v1.payment_methods.list_async(params={"customer": dev["customer"]})
        ).data
        + (await client.v1.payment_methods.list_async(params={"customer": alice["customer"]})).data,
        "mandate": [
            await client.v1.mandates.retrieve_async(
                str(dev_invoice.payment_settings.default_mandate)
            )
        ],
        "billing_portal.session": [
            await client.v1.billing_portal.sessions.create_async(
                params={
                    "customer": alice["customer"],
                    "flow_data": {"type": "payment_method_update"},
                }
            )
        ],
        "checkout.session": [
            await client.v1.checkout.sessions.create_async(params=checkout_params)
        ],
        "webhook_endpoint": [await client.v1.webhook_endpoints.retrieve_async(endpoint.id)],
        "event": (await client.v1.events.list_async(params={"limit": 100})).data,
        "test_helpers.test_clock": [
            await client.v1.test_helpers.test_clocks.retrieve_async(clock.id)
        ],
        "account": [await client.v1.accounts.create_async(params={"type": "standard"})],
        "deleted_customer": [await client.v1.customers.delete_async(declined_customer.id)],
        "deleted_webhook_endpoint": [await client.v1.webhook_endpoints.delete_async(endpoint.id)],
    }
    problems: list[str] = []
    for resource, found in served.items():
        assert found, f"nothing served for {resource}"
        for obj in found:
            plain = json.loads(str(obj)) if isinstance(obj, stripe.StripeObject) else obj
            problems += shape_problems(plain, examples[resource], resource)
    assert "\n".join(sorted(set(problems))) == ""
