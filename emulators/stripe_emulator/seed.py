"""The demo catalog and customers, in the states the billing flows need.

`seed_demo(state)` works on an emulator's state in process; `seed_remote(url)` asks a
running emulator through its admin endpoint. Both return the same JSON summary.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from stripe_emulator import events, lifecycle, objects, payments, proration
from stripe_emulator.lifecycle import ItemRequest
from stripe_emulator.resources import catalog
from stripe_emulator.state import Account, State

Json = dict[str, Any]

DEMO_API_KEY = "sk_test_askvault_demo"
DAY = 86_400

# tier -> (name, description, features, monthly amount per currency in minor units)
CATALOG: dict[str, tuple[str, str, list[str], dict[str, int]]] = {
    "starter": (
        "Starter",
        "For small teams getting started with AskVault.",
        ["Up to 3 seats", "1,000 answers per month", "Email support"],
        {"usd": 1900, "eur": 1900, "inr": 159900},
    ),
    "growth": (
        "Growth",
        "For growing support teams.",
        [
            "Up to 10 seats",
            "10,000 answers per month",
            "WhatsApp channel",
            "Priority email support",
        ],
        {"usd": 4900, "eur": 4900, "inr": 399900},
    ),
    "business": (
        "Business",
        "For companies running support at scale.",
        [
            "Unlimited seats",
            "100,000 answers per month",
            "WhatsApp channel",
            "SSO and audit log",
            "Enterprise docs access",
            "Dedicated success manager",
        ],
        {"usd": 19900, "eur": 19900, "inr": 1599900},
    ),
}

DEMO_EMAILS = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dev@example.in",
    "erin@example.com",
)


# The metadata key under which seeded customers carry their user id (the email's local
# part: "alice" for alice@example.com), as config/demo.toml's customer_metadata_key.
USER_ID_METADATA_KEY = "askvault_user_id"


def seed_demo(state: State, api_key: str = DEMO_API_KEY, now: int | None = None) -> Json:
    """Create the demo catalog and customers in the account of `api_key` (once) and
    return the summary: account, products and prices by tier, customers by email."""
    account = state.account_for_key(api_key)
    if not _find_customer(account, DEMO_EMAILS[0]):
        _seed(state, account, now if now is not None else state.wall_time())
    return summary(account, api_key)


async def seed_remote(base_url: str, api_key: str = DEMO_API_KEY) -> Json:
    """Seed a running emulator through `POST /_emulator/seed`."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url}/_emulator/seed", json={"api_key": api_key}) as response,
    ):
        response.raise_for_status()
        result: Json = await response.json()
        return result


def summary(account: Account, api_key: str) -> Json:
    products: Json = {}
    for product in account.all("product"):
        tier = product["metadata"].get("tier")
        if tier:
            prices = {
                price["currency"]: price["id"]
                for price in account.all("price")
                if price["product"] == product["id"] and price["active"]
            }
            products[tier] = {"product": product["id"], "name": product["name"], "prices": prices}
    customers: Json = {}
    for email in DEMO_EMAILS:
        customer = _find_customer(account, email)
        if customer is None:
            continue
        subscriptions = [
            subscription
            for subscription in account.all("subscription")
            if subscription["customer"] == customer["id"]
        ]
        subscription = subscriptions[-1] if subscriptions else None
        customers[email] = {
            "customer": customer["id"],
            "name": customer["name"],
            "subscription": subscription["id"] if subscription else None,
            "status": subscription["status"] if subscription else None,
            "payment_method": customer["invoice_settings"]["default_payment_method"],
            "invoices": [
                invoice["id"]
                for invoice in account.all("invoice")
                if invoice["customer"] == customer["id"]
            ],
            "charges": [
                charge["id"]
                for charge in account.all("charge")
                if charge["customer"] == customer["id"]
            ],
        }
    return {"api_key": api_key, "account": account.id, "products": products, "customers": customers}


def _find_customer(account: Account, email: str) -> Json | None:
    for customer in account.all("customer"):
        if customer["email"] == email:
            return customer
    return None


def _seed(state: State, account: Account, now: int) -> None:
    catalog_start = proration.add_interval(now, "month", -6)
    prices: dict[tuple[str, str], Json] = {}
    for tier, (name, description, features, amounts) in CATALOG.items():
        product = catalog.create_product(
            state,
            account,
            name=name,
            description=description,
            marketing_features=[{"name": feature} for feature in features],
            metadata={"tier": tier},
            product_id=f"prod_askvault_{tier}",
            now=catalog_start,
        )
        for currency, amount in amounts.items():
            prices[tier, currency] = catalog.create_price(
                state,
                account,
                product=product,
                currency=currency,
                unit_amount=amount,
                interval="month",
                lookup_key=f"{tier}_monthly_{currency}",
                nickname=f"{name} monthly ({currency.upper()})",
                metadata={"tier": tier},
                now=catalog_start,
            )

    # Alice: Growth since four months, every invoice paid.
    alice_start = proration.add_interval(now, "month", -4) - DAY
    alice = _customer(state, account, "alice@example.com", "Alice Anders", alice_start)
    _subscribe(state, account, alice, prices["growth", "usd"], "pm_card_visa", alice_start)

    # Carol: Growth for a month, then her card started declining: renewal failed, past_due.
    carol_start = proration.add_interval(now, "month", -1) - 2 * DAY
    lifecycle.advance(state, account, carol_start, clock_id=None)
    carol = _customer(state, account, "carol@example.com", "Carol Chen", carol_start)
    _subscribe(state, account, carol, prices["growth", "usd"], "pm_card_visa", carol_start)
    declining = payments.card_from_token(
        state, account, "pm_card_chargeCustomerFail", carol_start + DAY, {}
    )
    payments.attach(state, account, declining, carol)
    carol["invoice_settings"]["default_payment_method"] = declining["id"]

    # Dev: Growth in INR, paying by UPI on an India eMandate.
    dev_start = now - 12 * DAY
    lifecycle.advance(state, account, dev_start, clock_id=None)
    dev = _customer(state, account, "dev@example.in", "Dev Patel", dev_start, locales=["en-IN"])
    upi = account.put(
        objects.upi_payment_method(
            state.new_id("pm"), dev_start, vpa="dev@okaxis", customer_id=None, metadata={}
        )
    )
    payments.attach(state, account, upi, dev)
    dev["invoice_settings"]["default_payment_method"] = upi["id"]
    _create_subscription(state, account, dev, prices["growth", "inr"], upi, dev_start)

    # Bob: Starter, charged twice for the same amount three minutes apart.
    bob_start = now - 10 * DAY
    lifecycle.advance(state, account, bob_start, clock_id=None)
    bob = _customer(state, account, "bob@example.com", "Bob Brown", bob_start)
    subscription = _subscribe(
        state, account, bob, prices["starter", "usd"], "pm_card_mastercard", bob_start
    )
    first_invoice = account.get("invoice", str(subscription["latest_invoice"]))
    method = account.get("payment_method", str(bob["invoice_settings"]["default_payment_method"]))
    payments.collect(
        state,
        account,
        customer_id=str(bob["id"]),
        payment_method=method,
        amount=int(first_invoice["amount_paid"]),
        currency="usd",
        description="Starter (at $19.00 / month)",
        now=bob_start + 180,
    )

    # Erin: trialing Business for 14 days, started three days ago.
    erin_start = now - 3 * DAY
    lifecycle.advance(state, account, erin_start, clock_id=None)
    erin = _customer(state, account, "erin@example.com", "Erin Evans", erin_start)
    _subscribe(
        state, account, erin, prices["business", "usd"], "pm_card_visa", erin_start, trial_days=14
    )

    lifecycle.advance(state, account, now, clock_id=None)


def _customer(
    state: State,
    account: Account,
    email: str,
    name: str,
    created: int,
    locales: list[str] | None = None,
) -> Json:
    customer_id = state.new_id("cus", 14)
    customer = account.put(
        objects.customer(
            customer_id,
            created,
            email=email,
            name=name,
            phone=None,
            description="AskVault demo customer",
            # The workspace's user id of the customer: the demo workspace (and the tests)
            # bind a verified visitor to the customer carrying its user id under this key.
            metadata={"demo": "true", USER_ID_METADATA_KEY: email.partition("@")[0]},
            invoice_prefix=customer_id[4:12].upper(),
            test_clock=None,
            preferred_locales=locales or [],
        )
    )
    events.emit(state, account, "customer.created", customer, created=created)
    return customer


def _subscribe(
    state: State,
    account: Account,
    customer: Json,
    price: Json,
    card_token: str,
    at: int,
    trial_days: int | None = None,
) -> Json:
    method = payments.card_from_token(state, account, card_token, at, {})
    payments.attach(state, account, method, customer)
    customer["invoice_settings"]["default_payment_method"] = method["id"]
    return _create_subscription(state, account, customer, price, None, at, trial_days)


def _create_subscription(
    state: State,
    account: Account,
    customer: Json,
    price: Json,
    method: Json | None,
    at: int,
    trial_days: int | None = None,
) -> Json:
    return lifecycle.create(
        state,
        account,
        customer,
        items=[ItemRequest(item_id=None, price=price, quantity=1, deleted=False, metadata=None)],
        default_payment_method=method,
        trial_end=at + trial_days * DAY if trial_days else None,
        payment_behavior="allow_incomplete",
        collection_method="charge_automatically",
        days_until_due=None,
        metadata={"demo": "true"},
        description=None,
        cancel_at_period_end=False,
        now=at,
    )
