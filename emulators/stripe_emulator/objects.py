"""Builders of Stripe objects with every key of Stripe's official example of that resource.

Each builder returns the stored (unexpanded) form; `render.py` adds what is computed at
read time (embedded prices, a charge's refunds).
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def empty_address() -> Json:
    return {
        "city": None,
        "country": None,
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }


def list_object(data: list[Json], url: str, has_more: bool = False) -> Json:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def customer(
    customer_id: str,
    created: int,
    *,
    email: str | None,
    name: str | None,
    phone: str | None,
    description: str | None,
    metadata: dict[str, str],
    invoice_prefix: str,
    test_clock: str | None,
    preferred_locales: list[str],
) -> Json:
    return {
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "id": customer_id,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "object": "customer",
        "phone": phone,
        "preferred_locales": preferred_locales,
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": test_clock,
    }


def product(
    product_id: str,
    created: int,
    *,
    name: str,
    description: str | None,
    active: bool,
    marketing_features: list[Json],
    metadata: dict[str, str],
    unit_label: str | None,
    url: str | None,
) -> Json:
    return {
        "active": active,
        "created": created,
        "default_price": None,
        "description": description,
        "id": product_id,
        "images": [],
        "livemode": False,
        "marketing_features": marketing_features,
        "metadata": metadata,
        "name": name,
        "object": "product",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "unit_label": unit_label,
        "updated": created,
        "url": url,
        "type": "service",
    }


def price(
    price_id: str,
    created: int,
    *,
    product_id: str,
    currency: str,
    unit_amount: int,
    recurring: Json | None,
    active: bool,
    lookup_key: str | None,
    nickname: str | None,
    metadata: dict[str, str],
) -> Json:
    return {
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "id": price_id,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata,
        "nickname": nickname,
        "object": "price",
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def recurring(interval: str, interval_count: int, trial_period_days: int | None) -> Json:
    return {
        "interval": interval,
        "interval_count": interval_count,
        "meter": None,
        "usage_type": "licensed",
        "trial_period_days": trial_period_days,
    }


def plan_from_price(price_object: Json) -> Json:
    """The legacy `plan` Stripe still embeds in subscription items, derived from the price."""
    recurring_part = price_object["recurring"] or {}
    return {
        "active": price_object["active"],
        "amount": price_object["unit_amount"],
        "amount_decimal": price_object["unit_amount_decimal"],
        "billing_scheme": price_object["billing_scheme"],
        "created": price_object["created"],
        "currency": price_object["currency"],
        "id": price_object["id"],
        "interval": recurring_part.get("interval", "month"),
        "interval_count": recurring_part.get("interval_count", 1),
        "livemode": False,
        "metadata": price_object["metadata"],
        "meter": None,
        "nickname": price_object["nickname"],
        "object": "plan",
        "product": price_object["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": recurring_part.get("trial_period_days"),
        "usage_type": "licensed",
    }


CARD_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express"}


def card_payment_method(
    payment_method_id: str,
    created: int,
    *,
    brand: str,
    last4: str,
    fingerprint: str,
    exp_month: int,
    exp_year: int,
    customer_id: str | None,
    metadata: dict[str, str],
) -> Json:
    return {
        "allow_redisplay": "unspecified",
        "billing_details": billing_details(),
        "card": {
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint,
            "funding": "credit",
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
            "regulated_status": "unregulated",
        },
        "created": created,
        "customer": customer_id,
        "id": payment_method_id,
        "livemode": False,
        "metadata": metadata,
        "object": "payment_method",
        "type": "card",
        "customer_account": None,
    }


def upi_payment_method(
    payment_method_id: str,
    created: int,
    *,
    vpa: str,
    customer_id: str | None,
    metadata: dict[str, str],
) -> Json:
    return {
        "allow_redisplay": "unspecified",
        "billing_details": billing_details(),
        "upi": {"vpa": vpa},
        "created": created,
        "customer": customer_id,
        "id": payment_method_id,
        "livemode": False,
        "metadata": metadata,
        "object": "payment_method",
        "type": "upi",
        "customer_account": None,
    }


def billing_details(email: str | None = None, name: str | None = None) -> Json:
    return {
        "address": empty_address(),
        "email": email,
        "name": name,
        "phone": None,
        "tax_id": None,
    }


def upi_mandate(
    mandate_id: str,
    *,
    payment_method_id: str,
    accepted_at: int,
    amount: int,
    currency: str,
    description: str,
    end_date: int | None,
) -> Json:
    return {
        "customer_acceptance": {
            "accepted_at": accepted_at,
            "online": {"ip_address": "127.0.0.1", "user_agent": "stripe-emulator"},
            "type": "online",
        },
        "id": mandate_id,
        "livemode": False,
        "multi_use": {},
        "object": "mandate",
        "payment_method": payment_method_id,
        "payment_method_details": {
            "type": "upi",
            "upi": {
                "amount": amount,
                "amount_type": "maximum",
                "currency": currency,
                "description": description,
                "end_date": end_date,
            },
        },
        "status": "active",
        "type": "multi_use",
    }


def subscription_item(
    item_id: str,
    created: int,
    *,
    subscription_id: str,
    price_id: str,
    quantity: int,
    period_start: int,
    period_end: int,
    metadata: dict[str, str],
) -> Json:
    """Stored with the price id; rendering embeds the price and the legacy plan."""
    return {
        "created": created,
        "discounts": [],
        "id": item_id,
        "metadata": metadata,
        "object": "subscription_item",
        "price": price_id,
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
        "plan": None,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "billing_thresholds": None,
    }


def subscription(
    subscription_id: str,
    created: int,
    *,
    customer_id: str,
    currency: str,
    items: list[Json],
    billing_cycle_anchor: int,
    collection_method: str,
    days_until_due: int | None,
    default_payment_method: str | None,
    description: str | None,
    metadata: dict[str, str],
    status: str,
    trial_start: int | None,
    trial_end: int | None,
    test_clock: str | None,
    payment_method_options: Json | None,
    payment_method_types: list[str] | None,
) -> Json:
    return {
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": billing_cycle_anchor,
        "billing_cycle_anchor_config": None,
        "cancel_at": None,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "days_until_due": days_until_due,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "id": subscription_id,
        "invoice_settings": {
            "account_tax_ids": None,
            "issuer": {"type": "self"},
            "custom_fields": None,
            "description": None,
            "footer": None,
        },
        "items": list_object(items, f"/v1/subscription_items?subscription={subscription_id}"),
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata,
        "next_pending_invoice_item_invoice": None,
        "object": "subscription",
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": payment_method_options,
            "payment_method_types": payment_method_types,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created,
        "status": status,
        "test_clock": test_clock,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": trial_start,
        "cancel_at_period_end": False,
        "billing_thresholds": None,
        "billing_mode": {"type": "classic", "flexible": None},
        "customer_account": None,
        "managed_payments": None,
        "billing_schedules": [],
    }


def invoice_line(
    line_id: str,
    *,
    invoice_id: str | None,
    amount: int,
    currency: str,
    description: str,
    period_start: int,
    period_end: int,
    quantity: int,
    subscription_id: str | None,
    subscription_item_id: str | None,
    invoice_item_id: str | None,
    proration: bool,
    price_id: str,
    product_id: str,
    unit_amount: int,
) -> Json:
    if invoice_item_id is not None:
        parent: Json = {
            "invoice_item_details": {
                "invoice_item": invoice_item_id,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    else:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
            "type": "subscription_item_details",
        }
    return {
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": not proration,
        "discounts": [],
        "id": line_id,
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "object": "line_item",
        "period": {"end": period_end, "start": period_start},
        "quantity": quantity,
        "subscription": subscription_id,
        "pretax_credit_amounts": [],
        "taxes": [],
        "parent": parent,
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price_id, "product": product_id},
            "unit_amount_decimal": str(unit_amount),
        },
        "subtotal": amount,
        "quantity_decimal": str(quantity),
    }


def invoice_item(
    item_id: str,
    created: int,
    *,
    customer_id: str,
    amount: int,
    currency: str,
    description: str,
    period_start: int,
    period_end: int,
    proration: bool,
    quantity: int,
    subscription_id: str | None,
    subscription_item_id: str | None,
    price_id: str,
    product_id: str,
    unit_amount: int,
    test_clock: str | None,
) -> Json:
    return {
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "date": created,
        "description": description,
        "discountable": not proration,
        "discounts": [],
        "id": item_id,
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "object": "invoiceitem",
        "period": {"end": period_end, "start": period_start},
        "proration": proration,
        "quantity": quantity,
        "tax_rates": [],
        "test_clock": test_clock,
        "parent": {
            "subscription_details": {
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            }
            if subscription_id
            else None,
            "type": "subscription_details" if subscription_id else "manual",
        },
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price_id, "product": product_id},
            "unit_amount_decimal": str(unit_amount),
        },
        "net_amount": amount,
        "customer_account": None,
        "quantity_decimal": str(quantity),
    }


def invoice(
    invoice_id: str,
    created: int,
    *,
    customer: Json,
    currency: str,
    subscription_id: str | None,
    billing_reason: str,
    collection_method: str,
    period_start: int,
    period_end: int,
    lines: list[Json],
    default_payment_method: str | None,
    default_mandate: str | None,
    description: str | None,
    due_date: int | None,
    test_clock: str | None,
    metadata: dict[str, str],
) -> Json:
    total = sum(int(line["amount"]) for line in lines)
    return {
        "account_country": "US",
        "account_name": "AskVault Demo",
        "account_tax_ids": None,
        "amount_due": total,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": collection_method == "charge_automatically",
        "automatic_tax": {
            "enabled": False,
            "liability": None,
            "status": None,
            "disabled_reason": None,
            "provider": None,
        },
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": due_date,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "id": invoice_id,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": list_object(lines, f"/v1/invoices/{invoice_id}/lines"),
        "livemode": False,
        "metadata": metadata,
        "next_payment_attempt": None,
        "number": None,
        "object": "invoice",
        "on_behalf_of": None,
        "payment_settings": {
            "default_mandate": default_mandate,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": subscription_id,
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": test_clock,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "webhooks_delivered_at": None,
        "automatically_finalizes_at": None,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "amount_overpaid": 0,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": None, "subscription": subscription_id}
            if subscription_id
            else None,
            "type": "subscription_details" if subscription_id else "manual",
        }
        if subscription_id
        else None,
        "customer_account": None,
    }


def invoice_payment(
    invoice_payment_id: str,
    created: int,
    *,
    invoice_id: str,
    payment_intent_id: str,
    amount: int,
    currency: str,
) -> Json:
    return {
        "amount_paid": None,
        "amount_requested": amount,
        "created": created,
        "currency": currency,
        "id": invoice_payment_id,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "object": "invoice_payment",
        "payment": {"type": "payment_intent", "payment_intent": payment_intent_id},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }


def payment_intent(
    payment_intent_id: str,
    created: int,
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    payment_method_id: str | None,
    payment_method_type: str,
    description: str | None,
    metadata: dict[str, str],
    client_secret: str,
) -> Json:
    return {
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": client_secret,
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "description": description,
        "id": payment_intent_id,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "object": "payment_intent",
        "on_behalf_of": None,
        "payment_method": payment_method_id,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": [payment_method_type],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method"
        if payment_method_id is None
        else "requires_confirmation",
        "transfer_data": None,
        "transfer_group": None,
        "source": None,
        "excluded_payment_method_types": None,
        "customer_account": None,
        "managed_payments": None,
    }


def card_payment_details(card: Json, amount: int) -> Json:
    return {
        "card": {
            "amount_authorized": amount,
            "brand": card["brand"],
            "checks": dict(card["checks"]),
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card["last4"],
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card["brand"],
            "network_token": {"used": False},
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "three_d_secure": None,
            "wallet": None,
            "authorization_code": "123456",
            "regulated_status": card["regulated_status"],
            "network_transaction_id": "123456789012345",
            "transaction_link_id": None,
        },
        "type": "card",
    }


def charge(
    charge_id: str,
    created: int,
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    description: str | None,
    payment_intent_id: str,
    payment_method_id: str,
    payment_method_details: Json,
    succeeded: bool,
    failure_code: str | None,
    failure_message: str | None,
    outcome: Json,
    receipt_url: str,
    metadata: dict[str, str],
    balance_transaction: str | None,
) -> Json:
    return {
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": balance_transaction,
        "billing_details": billing_details(),
        "calculated_statement_descriptor": "ASKVAULT DEMO",
        "captured": succeeded,
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "id": charge_id,
        "livemode": False,
        "metadata": metadata,
        "object": "charge",
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": payment_intent_id,
        "payment_method": payment_method_id,
        "payment_method_details": payment_method_details,
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": receipt_url,
        "refunded": False,
        "refunds": None,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
        "source": None,
    }


def charge_outcome(succeeded: bool, decline_code: str | None) -> Json:
    return {
        "advice_code": None if succeeded else "try_again_later",
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": "approved_by_network" if succeeded else "declined_by_network",
        "reason": None if succeeded else decline_code,
        "seller_message": "Payment complete."
        if succeeded
        else "The bank did not return any further details with this decline.",
        "type": "authorized" if succeeded else "issuer_declined",
    }


def refund(
    refund_id: str,
    created: int,
    *,
    amount: int,
    charge_id: str,
    currency: str,
    payment_intent_id: str | None,
    reason: str | None,
    metadata: dict[str, str],
    card: bool,
    customer_id: str | None,
    payment_method_id: str | None,
) -> Json:
    return {
        "amount": amount,
        "balance_transaction": None,
        "charge": charge_id,
        "created": created,
        "currency": currency,
        "destination_details": {"card": {"type": "refund"}, "type": "card"} if card else None,
        "id": refund_id,
        "metadata": metadata,
        "object": "refund",
        "payment_intent": payment_intent_id,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
        "customer": customer_id,
        "customer_account": None,
        "payment_method": payment_method_id,
    }


def webhook_endpoint(
    endpoint_id: str,
    created: int,
    *,
    url: str,
    enabled_events: list[str],
    description: str | None,
    api_version: str | None,
    metadata: dict[str, str],
) -> Json:
    return {
        "api_version": api_version,
        "application": None,
        "created": created,
        "description": description,
        "enabled_events": enabled_events,
        "id": endpoint_id,
        "livemode": False,
        "metadata": metadata,
        "object": "webhook_endpoint",
        "status": "enabled",
        "url": url,
    }


def event(
    event_id: str,
    created: int,
    *,
    event_type: str,
    data_object: Json,
    previous_attributes: Json | None,
    api_version: str,
    request_id: str | None,
    idempotency_key: str | None,
    pending_webhooks: int,
    account_id: str | None,
) -> Json:
    data: Json = {"object": data_object}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    built: Json = {
        "api_version": api_version,
        "created": created,
        "data": data,
        "id": event_id,
        "livemode": False,
        "object": "event",
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }
    if account_id is not None:
        built["account"] = account_id
    return built


def test_clock(clock_id: str, created: int, *, frozen_time: int, name: str | None) -> Json:
    return {
        "created": created,
        "deletes_after": created + 30 * 86_400,
        "frozen_time": frozen_time,
        "id": clock_id,
        "livemode": False,
        "name": name,
        "object": "test_helpers.test_clock",
        "status": "ready",
        "status_details": {},
    }


def portal_session(
    session_id: str,
    created: int,
    *,
    customer_id: str,
    return_url: str | None,
    url: str,
    flow: Json | None,
    locale: str | None,
) -> Json:
    return {
        "configuration": "bpc_emulator_default",
        "created": created,
        "customer": customer_id,
        "flow": flow,
        "id": session_id,
        "livemode": False,
        "locale": locale,
        "object": "billing_portal.session",
        "on_behalf_of": None,
        "return_url": return_url,
        "url": url,
        "customer_account": None,
    }


def account(account_id: str, created: int, *, email: str | None, restriction: str | None) -> Json:
    charges_enabled = restriction is None
    return {
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": None,
            "name": None,
            "product_description": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
            "minority_owned_business_designation": None,
        },
        "business_type": None,
        "capabilities": {
            "card_payments": "active" if charges_enabled else "inactive",
            "transfers": "active" if charges_enabled else "inactive",
        },
        "charges_enabled": charges_enabled,
        "controller": {"type": "application"},
        "country": "US",
        "created": created,
        "default_currency": "usd",
        "details_submitted": True,
        "email": email,
        "external_accounts": list_object([], f"/v1/accounts/{account_id}/external_accounts"),
        "future_requirements": requirements(None),
        "id": account_id,
        "metadata": {},
        "object": "account",
        "payouts_enabled": charges_enabled,
        "requirements": requirements(None if charges_enabled else "requirements.past_due"),
        "settings": None,
        "tos_acceptance": {"date": created, "ip": "127.0.0.1", "user_agent": None},
        "type": "standard",
    }


def requirements(disabled_reason: str | None) -> Json:
    due = ["external_account"] if disabled_reason else []
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": due,
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": due,
        "past_due": due,
        "pending_verification": [],
    }


# The keys of a Checkout Session this emulator leaves null (it collects no addresses, taxes,
# consents or promotions).
_CHECKOUT_NULL_KEYS = (
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "automatic_tax",
    "billing_address_collection",
    "client_reference_id",
    "client_secret",
    "collected_information",
    "consent",
    "consent_collection",
    "currency_conversion",
    "custom_text",
    "customer_account",
    "customer_creation",
    "customer_details",
    "customer_email",
    "discounts",
    "integration_identifier",
    "invoice_creation",
    "locale",
    "managed_payments",
    "origin_context",
    "payment_intent",
    "payment_link",
    "payment_method_collection",
    "payment_method_configuration_details",
    "permissions",
    "phone_number_collection",
    "recovered_from",
    "saved_payment_method_options",
    "setup_intent",
    "shipping_address_collection",
    "shipping_cost",
    "submit_type",
    "total_details",
    "ui_mode",
    "wallet_options",
)


def checkout_session(
    session_id: str,
    created: int,
    *,
    customer_id: str,
    mode: str,
    currency: str,
    amount: int,
    payment_method_types: list[str],
    success_url: str | None,
    cancel_url: str | None,
    url: str,
    expires_at: int,
    metadata: Json,
) -> Json:
    session: Json = dict.fromkeys(_CHECKOUT_NULL_KEYS)
    session.update(
        {
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": cancel_url,
            "created": created,
            "currency": currency,
            "custom_fields": [],
            "customer": customer_id,
            "expires_at": expires_at,
            "id": session_id,
            "invoice": None,
            "livemode": False,
            "metadata": metadata,
            "mode": mode,
            "object": "checkout.session",
            "payment_method_options": {},
            "payment_method_types": payment_method_types,
            "payment_status": "unpaid",
            "shipping_options": [],
            "status": "open",
            "subscription": None,
            "success_url": success_url,
            "url": url,
        }
    )
    return session
