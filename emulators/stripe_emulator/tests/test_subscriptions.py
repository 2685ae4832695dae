"""Subscriptions: lifecycle, plan changes with proration to the second, previews, cancel,
pause, and test clocks driving renewals and failed payments."""

from __future__ import annotations

import asyncio
import time

import pytest
import stripe

from stripe_emulator.app import RunningEmulator
from stripe_emulator.tests.helpers import (
    CLOCK_START,
    customer_on_clock,
    hand_proration,
    make_catalog,
)

DAY = 86_400
# 2026-07-15T00:00:00Z: one calendar month after CLOCK_START.
ONE_MONTH_LATER = 1_784_073_600


async def test_create_puts_period_on_items_and_pays_first_invoice(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "new@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={
            "customer": customer.id,
            "items": [{"price": catalog.growth.id}],
            "expand": ["latest_invoice"],
        }
    )
    assert subscription.status == "active"
    item = subscription["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (CLOCK_START, ONE_MONTH_LATER)
    assert "current_period_end" not in subscription
    invoice = subscription.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == (
        "paid",
        4900,
        "subscription_create",
    )
    listed = await client.v1.subscriptions.list_async(
        params={"customer": customer.id, "price": catalog.growth.id}
    )
    assert [found.id for found in listed.data] == [subscription.id]
    assert (
        await client.v1.subscriptions.list_async(params={"price": catalog.business.id})
    ).data == []
    assert (await client.v1.subscriptions.list_async(params={"status": "past_due"})).data == []


async def test_price_change_with_create_prorations_matches_hand_computed_amounts(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "upgrade@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    item_id = subscription["items"].data[0].id
    at = CLOCK_START + 10 * DAY + 12_345
    credit = -hand_proration(4900, CLOCK_START, ONE_MONTH_LATER, at)
    debit = hand_proration(19900, CLOCK_START, ONE_MONTH_LATER, at)

    preview = await client.v1.invoices.create_preview_async(
        params={
            "customer": customer.id,
            "subscription": subscription.id,
            "subscription_details": {
                "items": [{"id": item_id, "price": catalog.business.id}],
                "proration_date": at,
                "proration_behavior": "create_prorations",
            },
        }
    )
    amounts = [line.amount for line in preview.lines.data]
    assert amounts == [credit, debit, 19900]
    assert preview.amount_due == credit + debit + 19900
    descriptions = [str(line.description) for line in preview.lines.data]
    assert descriptions[0] == "Unused time on Growth after 25 Jun 2026"
    assert descriptions[1] == "Remaining time on Business after 25 Jun 2026"
    assert descriptions[2] == "1 × Business (at $199.00 / month)"  # noqa: RUF001

    updated = await client.v1.subscriptions.update_async(
        subscription.id,
        params={
            "items": [{"id": item_id, "price": catalog.business.id}],
            "proration_behavior": "create_prorations",
            "proration_date": at,
        },
    )
    assert updated["items"].data[0].price.id == catalog.business.id
    assert updated["items"].data[0].current_period_end == ONE_MONTH_LATER
    pending = await client.v1.invoice_items.list_async(
        params={"customer": customer.id, "pending": True}
    )
    assert sorted(item.amount for item in pending.data) == sorted([credit, debit])
    assert all(item.proration for item in pending.data)

    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": ONE_MONTH_LATER + 60}
    )
    renewal = (
        await client.v1.invoices.list_async(params={"subscription": subscription.id, "limit": 1})
    ).data[0]
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.status == "paid"
    assert renewal.amount_paid == credit + debit + 19900
    assert (
        await client.v1.invoice_items.list_async(params={"customer": customer.id, "pending": True})
    ).data == []


async def test_always_invoice_charges_the_proration_now(client: stripe.StripeClient) -> None:
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "now@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    at = CLOCK_START + 3 * DAY
    expected = hand_proration(19900, CLOCK_START, ONE_MONTH_LATER, at) - hand_proration(
        4900, CLOCK_START, ONE_MONTH_LATER, at
    )
    updated = await client.v1.subscriptions.update_async(
        subscription.id,
        params={
            "items": [{"id": subscription["items"].data[0].id, "price": catalog.business.id}],
            "proration_behavior": "always_invoice",
            "proration_date": at,
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    assert invoice.billing_reason == "subscription_update"
    assert (invoice.status, invoice.amount_paid) == ("paid", expected)
    charges = await client.v1.charges.list_async(params={"customer": customer.id})
    assert [charge.amount for charge in charges.data] == [expected, 4900]


async def test_proration_none_changes_price_without_any_invoice_item(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "none@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    await client.v1.subscriptions.update_async(
        subscription.id,
        params={
            "items": [{"id": subscription["items"].data[0].id, "price": catalog.business.id}],
            "proration_behavior": "none",
        },
    )
    assert (await client.v1.invoice_items.list_async(params={"customer": customer.id})).data == []
    assert len((await client.v1.invoices.list_async(params={"customer": customer.id})).data) == 1


async def test_cancel_at_period_end_then_renewal_time_ends_it(client: stripe.StripeClient) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "leaving@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    scheduled = await client.v1.subscriptions.update_async(
        subscription.id, params={"cancel_at_period_end": True}
    )
    assert (scheduled.cancel_at_period_end, scheduled.cancel_at, scheduled.status) == (
        True,
        ONE_MONTH_LATER,
        "active",
    )
    undone = await client.v1.subscriptions.update_async(
        subscription.id, params={"cancel_at_period_end": False}
    )
    assert (undone.cancel_at_period_end, undone.cancel_at) == (False, None)
    await client.v1.subscriptions.update_async(
        subscription.id, params={"cancel_at_period_end": True}
    )
    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": ONE_MONTH_LATER + 1}
    )
    ended = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert (ended.status, ended.ended_at) == ("canceled", ONE_MONTH_LATER)
    assert len((await client.v1.invoices.list_async(params={"customer": customer.id})).data) == 1


async def test_cancel_now_and_list_filters(client: stripe.StripeClient) -> None:
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "gone@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    canceled = await client.v1.subscriptions.cancel_async(
        subscription.id, params={"cancellation_details": {"comment": "too expensive"}}
    )
    assert (canceled.status, canceled.canceled_at, canceled.ended_at) == (
        "canceled",
        CLOCK_START,
        CLOCK_START,
    )
    assert (
        canceled.cancellation_details is not None
        and canceled.cancellation_details.comment == "too expensive"
    )
    assert (await client.v1.subscriptions.list_async(params={"customer": customer.id})).data == []
    listed = await client.v1.subscriptions.list_async(
        params={"customer": customer.id, "status": "canceled"}
    )
    assert [found.id for found in listed.data] == [subscription.id]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.subscriptions.cancel_async(subscription.id)


async def test_pause_collection_voids_renewal_invoices_until_cleared(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "paused@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    paused = await client.v1.subscriptions.update_async(
        subscription.id, params={"pause_collection": {"behavior": "void"}}
    )
    assert paused.pause_collection is not None and paused.pause_collection.behavior == "void"
    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": ONE_MONTH_LATER + 1}
    )
    latest = (
        await client.v1.invoices.list_async(params={"subscription": subscription.id, "limit": 1})
    ).data[0]
    assert latest.status == "void"
    resumed = await client.v1.subscriptions.update_async(
        subscription.id, params={"pause_collection": ""}
    )
    assert resumed.pause_collection is None
    assert resumed.status == "active"


async def test_declining_card_renewal_goes_past_due_then_pay_with_new_card_recovers(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "declines@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    failing = await client.v1.payment_methods.attach_async(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    await client.v1.customers.update_async(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": ONE_MONTH_LATER + 60}
    )
    past_due = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert past_due.status == "past_due"
    failed = (
        await client.v1.invoices.list_async(
            params={"subscription": subscription.id, "status": "open"}
        )
    ).data[0]
    assert (failed.attempt_count, failed.next_payment_attempt) == (1, ONE_MONTH_LATER + 3 * DAY)

    with pytest.raises(stripe.CardError) as declined:
        await client.v1.invoices.pay_async(failed.id)
    assert declined.value.code == "card_declined"
    assert declined.value.http_status == 402
    assert (await client.v1.invoices.retrieve_async(failed.id)).status == "open"
    assert (await client.v1.subscriptions.retrieve_async(subscription.id)).status == "past_due"

    working = await client.v1.payment_methods.attach_async(
        "pm_card_mastercard", params={"customer": customer.id}
    )
    paid = await client.v1.invoices.pay_async(failed.id, params={"payment_method": working.id})
    assert (paid.status, paid.amount_paid) == ("paid", 4900)
    assert (await client.v1.subscriptions.retrieve_async(subscription.id)).status == "active"


async def test_automatic_retries_exhausted_make_the_subscription_unpaid(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "unpaid@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    failing = await client.v1.payment_methods.attach_async(
        "pm_card_chargeCustomerFail", params={"customer": customer.id}
    )
    await client.v1.customers.update_async(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": ONE_MONTH_LATER + 20 * DAY}
    )
    unpaid = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert unpaid.status == "unpaid"
    invoice = (
        await client.v1.invoices.list_async(
            params={"subscription": subscription.id, "status": "open"}
        )
    ).data[0]
    assert (invoice.attempt_count, invoice.next_payment_attempt) == (4, None)


async def test_trial_then_first_paid_invoice_at_trial_end(client: stripe.StripeClient) -> None:
    catalog = await make_catalog(client)
    customer, clock = await customer_on_clock(client, "trial@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={
            "customer": customer.id,
            "items": [{"price": catalog.business.id}],
            "trial_period_days": 14,
        }
    )
    assert (subscription.status, subscription.trial_end) == ("trialing", CLOCK_START + 14 * DAY)
    await client.v1.test_helpers.test_clocks.advance_async(
        clock.id, params={"frozen_time": CLOCK_START + 15 * DAY}
    )
    active = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert active.status == "active"
    invoices = await client.v1.invoices.list_async(params={"subscription": subscription.id})
    assert [invoice.amount_paid for invoice in invoices.data] == [19900, 0]


async def test_interval_change_resets_the_cycle_and_invoices_now(
    client: stripe.StripeClient,
) -> None:
    catalog = await make_catalog(client)
    customer, _ = await customer_on_clock(client, "yearly@example.com")
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    updated = await client.v1.subscriptions.update_async(
        subscription.id,
        params={
            "items": [{"id": subscription["items"].data[0].id, "price": catalog.growth_yearly.id}],
            "proration_date": CLOCK_START + DAY,
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert isinstance(invoice, stripe.Invoice)
    credit = hand_proration(4900, CLOCK_START, ONE_MONTH_LATER, CLOCK_START + DAY)
    assert invoice.amount_paid == 49000 - credit
    assert updated["items"].data[0].current_period_start == CLOCK_START + DAY


async def test_a_wall_clock_cancel_at_ends_the_subscription_though_reads_skip_the_catch_up(
    emulator: RunningEmulator, client: stripe.StripeClient, api_key: str
) -> None:
    """Reads skip the catch-up (a walk over every subscription and invoice) until the next
    due moment; the moment still comes: the first request after it ends the subscription."""
    catalog = await make_catalog(client)
    customer = await client.v1.customers.create_async(params={"payment_method": "pm_card_visa"})
    methods = await client.v1.payment_methods.list_async(params={"customer": customer.id})
    await client.v1.customers.update_async(
        customer.id, params={"invoice_settings": {"default_payment_method": methods.data[0].id}}
    )
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer.id, "items": [{"price": catalog.growth.id}]}
    )
    cancel_at = int(time.time()) + 2
    await client.v1.subscriptions.update_async(subscription.id, params={"cancel_at": cancel_at})
    read = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert read.status == "active"
    account = emulator.state.account_for_key(api_key)
    assert emulator.state.caught_up[account.id] == cancel_at  # the next reads skip
    while int(time.time()) < cancel_at:
        await asyncio.sleep(0.2)
    ended = await client.v1.subscriptions.retrieve_async(subscription.id)
    assert (ended.status, ended.ended_at) == ("canceled", cancel_at)
    deleted = await client.v1.events.list_async(params={"type": "customer.subscription.deleted"})
    assert [event.data.object["id"] for event in deleted.data] == [subscription.id]
