"""Builders shared by the tests: a catalog, a customer on a test clock with a card."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import stripe

# 2026-06-15T00:00:00Z: a fixed start so periods and prorations are known in advance.
CLOCK_START = 1_781_481_600


@dataclass
class Catalog:
    growth: stripe.Price
    business: stripe.Price
    growth_yearly: stripe.Price


async def make_catalog(client: stripe.StripeClient) -> Catalog:
    growth_product = await client.v1.products.create_async(
        params={
            "name": "Growth",
            "marketing_features": [{"name": "WhatsApp channel"}],
            "metadata": {"tier": "growth"},
        }
    )
    business_product = await client.v1.products.create_async(params={"name": "Business"})
    growth = await client.v1.prices.create_async(
        params={
            "product": growth_product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    business = await client.v1.prices.create_async(
        params={
            "product": business_product.id,
            "currency": "usd",
            "unit_amount": 19900,
            "recurring": {"interval": "month"},
        }
    )
    growth_yearly = await client.v1.prices.create_async(
        params={
            "product": growth_product.id,
            "currency": "usd",
            "unit_amount": 49000,
            "recurring": {"interval": "year"},
        }
    )
    return Catalog(growth, business, growth_yearly)


async def customer_on_clock(
    client: stripe.StripeClient, email: str, card: str = "pm_card_visa", start: int = CLOCK_START
) -> tuple[stripe.Customer, stripe.test_helpers.TestClock]:
    clock = await client.v1.test_helpers.test_clocks.create_async(params={"frozen_time": start})
    customer = await client.v1.customers.create_async(
        params={"email": email, "test_clock": clock.id, "payment_method": card}
    )
    methods = await client.v1.payment_methods.list_async(params={"customer": customer.id})
    customer = await client.v1.customers.update_async(
        customer.id, params={"invoice_settings": {"default_payment_method": methods.data[0].id}}
    )
    return customer, clock


def half_up(value: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (by hand, not by the emulator)."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole = int(magnitude)
    return sign * (whole + (1 if magnitude - whole >= Fraction(1, 2) else 0))


def hand_proration(unit_amount: int, start: int, end: int, at: int) -> int:
    return half_up(Fraction(unit_amount * (end - at), end - start))
