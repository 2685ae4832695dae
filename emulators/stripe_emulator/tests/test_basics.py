"""The HTTP surface: auth, error shapes, isolation, forms, pagination, expand, Connect."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import stripe

from stripe_emulator import forms
from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.conftest import admin, close_http, error_code, make_client


def test_bracketed_form_keys_decode_to_nested_lists_and_dicts() -> None:
    decoded = forms.decode_pairs(
        [
            ("items[0][price]", "price_a"),
            ("items[0][quantity]", "2"),
            ("items[1][id]", "si_b"),
            ("expand[]", "customer"),
            ("expand[]", "latest_invoice"),
            ("metadata[tier]", "growth"),
            ("pause_collection", ""),
        ]
    )
    assert decoded == {
        "items": [{"price": "price_a", "quantity": "2"}, {"id": "si_b"}],
        "expand": ["customer", "latest_invoice"],
        "metadata": {"tier": "growth"},
        "pause_collection": "",
    }


async def test_missing_and_invalid_keys_answer_401_with_stripe_error_shape(
    emulator: RunningEmulator,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/v1/customers") as response,
    ):
        assert response.status == 401
        body = await response.json()
        assert body["error"]["type"] == "invalid_request_error"
        assert "did not provide an API key" in body["error"]["message"]
    sdk, http_client = make_client(emulator, "sk_live_nope_1234567890")
    try:
        with pytest.raises(stripe.AuthenticationError) as raised:
            await sdk.v1.customers.list_async()
        assert raised.value.http_status == 401
        assert "Invalid API Key provided" in str(raised.value.user_message)
    finally:
        await close_http(http_client)


async def test_each_secret_key_is_an_isolated_account(emulator: RunningEmulator) -> None:
    first, first_http = make_client(emulator, "sk_test_first_account")
    second, second_http = make_client(emulator, "sk_test_second_account")
    try:
        created = await first.v1.customers.create_async(params={"email": "a@example.com"})
        assert [customer.id for customer in (await first.v1.customers.list_async()).data] == [
            created.id
        ]
        assert (await second.v1.customers.list_async()).data == []
        with pytest.raises(stripe.InvalidRequestError) as raised:
            await second.v1.customers.retrieve_async(created.id)
        assert raised.value.http_status == 404
        assert raised.value.code == "resource_missing"
        assert raised.value.param == "id"
    finally:
        await close_http(first_http)
        await close_http(second_http)


async def test_unknown_route_and_missing_param_errors(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.subscriptions.create_async(params={"items": [{"price": "price_x"}]})  # type: ignore[typeddict-item]
    assert raised.value.code == "parameter_missing"
    assert raised.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await client.raw_request_async("get", "/v1/not_a_resource")
    assert unknown.value.http_status == 404
    assert "Unrecognized request URL" in str(unknown.value.user_message)


async def test_pagination_limit_starting_after_and_has_more(client: stripe.StripeClient) -> None:
    ids = [
        (await client.v1.customers.create_async(params={"email": f"p{index}@example.com"})).id
        for index in range(5)
    ]
    first_page = await client.v1.customers.list_async(params={"limit": 2})
    # Newest first, like Stripe.
    assert [customer.id for customer in first_page.data] == [ids[4], ids[3]]
    assert first_page.has_more is True
    second_page = await client.v1.customers.list_async(
        params={"limit": 2, "starting_after": first_page.data[-1].id}
    )
    assert [customer.id for customer in second_page.data] == [ids[2], ids[1]]
    everything = [
        customer.id
        async for customer in (
            await client.v1.customers.list_async(params={"limit": 2})
        ).auto_paging_iter()
    ]
    assert everything == list(reversed(ids))


async def test_connected_account_is_scoped_under_its_platform(
    emulator: RunningEmulator, client: stripe.StripeClient, api_key: str
) -> None:
    connected = await client.v1.accounts.create_async(
        params={"type": "standard", "email": "shop@example.com"}
    )
    assert connected.id.startswith("acct_")
    in_connected = await client.v1.customers.create_async(
        params={"email": "buyer@example.com"}, options={"stripe_account": connected.id}
    )
    platform_customers = await client.v1.customers.list_async()
    assert platform_customers.data == []
    connected_customers = await client.v1.customers.list_async(
        options={"stripe_account": connected.id}
    )
    assert [customer.id for customer in connected_customers.data] == [in_connected.id]
    other, other_http = make_client(emulator, "sk_test_someone_else")
    try:
        with pytest.raises(stripe.PermissionError) as raised:
            await other.v1.customers.list_async(options={"stripe_account": connected.id})
        assert raised.value.http_status == 403
        assert error_code(raised.value) == "account_invalid"
    finally:
        await close_http(other_http)


async def test_restricted_account_answers_like_stripe(
    emulator: RunningEmulator, client: stripe.StripeClient, api_key: str
) -> None:
    connected = await client.v1.accounts.create_async(params={"type": "standard"})
    options: stripe.RequestOptions = {"stripe_account": connected.id}
    await admin(
        emulator,
        "POST",
        "/accounts/restrict",
        {"api_key": api_key, "account": connected.id, "mode": "charges_disabled"},
    )
    customer = await client.v1.customers.create_async(
        params={"email": "r@example.com"}, options=options
    )
    with pytest.raises(stripe.InvalidRequestError) as disabled:
        await client.v1.payment_intents.create_async(
            params={
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            },
            options=options,
        )
    assert "cannot currently make charges" in str(disabled.value.user_message)
    account = await client.v1.accounts.retrieve_async(connected.id)
    assert account.charges_enabled is False
    assert (
        account.requirements is not None
        and account.requirements.disabled_reason == "requirements.past_due"
    )
    await admin(
        emulator,
        "POST",
        "/accounts/restrict",
        {"api_key": api_key, "account": connected.id, "mode": "access_revoked"},
    )
    with pytest.raises(stripe.PermissionError) as revoked:
        await client.v1.customers.list_async(options=options)
    assert error_code(revoked.value) == "account_invalid"
    assert "Application access may have been revoked" in str(revoked.value.user_message)


async def test_expand_nested_paths(demo: tuple[stripe.StripeClient, dict[str, object]]) -> None:
    client, summary = demo
    alice = summary["customers"]["alice@example.com"]  # type: ignore[index]
    subscription = await client.v1.subscriptions.retrieve_async(
        alice["subscription"],
        params={"expand": ["items.data.price.product", "customer", "latest_invoice"]},
    )
    product = subscription["items"].data[0].price.product
    assert isinstance(product, stripe.Product)
    assert product.name == "Growth"
    assert isinstance(subscription.customer, stripe.Customer)
    assert subscription.customer.email == "alice@example.com"
    assert isinstance(subscription.latest_invoice, stripe.Invoice)
    plain = await client.v1.subscriptions.retrieve_async(alice["subscription"])
    assert plain.customer == alice["customer"]
    assert plain["items"].data[0].price.product == "prod_askvault_growth"


async def test_sync_sdk_client_works_too(emulator: RunningEmulator) -> None:
    """The SDK's default synchronous client, run in a thread as blocking code would."""
    sync_client = stripe.StripeClient("sk_test_sync_user", base_addresses={"api": emulator.url})

    def create_and_find() -> list[str]:
        created = sync_client.v1.customers.create(params={"email": "sync@example.com"})
        found = sync_client.v1.customers.list(params={"email": "sync@example.com"})
        return [created.id, *(customer.id for customer in found.data)]

    created_id, found_id = await asyncio.to_thread(create_and_find)
    assert created_id == found_id
