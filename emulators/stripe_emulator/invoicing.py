"""Invoices: building lines, finalizing (numbers, balance, public links), paying, voiding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stripe_emulator import errors, events, objects, payments, proration
from stripe_emulator.state import Account, State

Json = dict[str, Any]

# Automatic collection retries a failed invoice after these delays (days after the
# previous attempt); when the last one fails the subscription becomes `unpaid`.
RETRY_DELAYS_DAYS = (3, 5, 7)
MAX_ATTEMPTS = len(RETRY_DELAYS_DAYS) + 1


@dataclass(frozen=True)
class LineSpec:
    """One invoice line before it belongs to an invoice."""

    amount: int
    description: str
    period_start: int
    period_end: int
    quantity: int
    price: Json
    proration: bool
    subscription_item_id: str | None = None
    invoice_item_id: str | None = None


def product_name(account: Account, price: Json) -> str:
    product = account.find("product", str(price["product"]))
    return str(product["name"]) if product else str(price["product"])


def cycle_line(
    account: Account, price: Json, quantity: int, start: int, end: int, item_id: str | None
) -> LineSpec:
    """The full charge for one period of a subscription item."""
    recurring = price["recurring"] or {"interval": "month", "interval_count": 1}
    every = (
        recurring["interval"]
        if recurring["interval_count"] == 1
        else f"{recurring['interval_count']} {recurring['interval']}s"
    )
    unit = proration.format_money(int(price["unit_amount"]), str(price["currency"]))
    return LineSpec(
        amount=int(price["unit_amount"]) * quantity,
        # Stripe writes the multiplication sign in line descriptions.
        description=f"{quantity} × {product_name(account, price)} (at {unit} / {every})",  # noqa: RUF001
        period_start=start,
        period_end=end,
        quantity=quantity,
        price=price,
        proration=False,
        subscription_item_id=item_id,
    )


def pending_items(account: Account, customer_id: str, subscription_id: str | None) -> list[Json]:
    return [
        item
        for item in account.all("invoiceitem")
        if item["customer"] == customer_id
        and item["invoice"] is None
        and (item["parent"]["subscription_details"] or {}).get("subscription") == subscription_id
    ]


def item_line(account: Account, item: Json) -> LineSpec:
    price = account.get("price", str(item["pricing"]["price_details"]["price"]))
    return LineSpec(
        amount=int(item["amount"]),
        description=str(item["description"]),
        period_start=int(item["period"]["start"]),
        period_end=int(item["period"]["end"]),
        quantity=int(item["quantity"]),
        price=price,
        proration=bool(item["proration"]),
        subscription_item_id=(item["parent"]["subscription_details"] or {}).get(
            "subscription_item"
        ),
        invoice_item_id=str(item["id"]),
    )


def build_invoice(
    state: State,
    account: Account,
    customer: Json,
    *,
    subscription: Json | None,
    billing_reason: str,
    lines: list[LineSpec],
    period_start: int,
    period_end: int,
    now: int,
    invoice_id: str | None = None,
) -> Json:
    """An invoice object with its lines; not stored (previews use it as is)."""
    currency = str(
        subscription["currency"]
        if subscription
        else (lines[0].price["currency"] if lines else "usd")
    )
    invoice_id = invoice_id or state.new_id("in")
    built_lines = [
        objects.invoice_line(
            state.new_id("il"),
            invoice_id=invoice_id,
            amount=line.amount,
            currency=currency,
            description=line.description,
            period_start=line.period_start,
            period_end=line.period_end,
            quantity=line.quantity,
            subscription_id=subscription["id"] if subscription else None,
            subscription_item_id=line.subscription_item_id,
            invoice_item_id=line.invoice_item_id,
            proration=line.proration,
            price_id=str(line.price["id"]),
            product_id=str(line.price["product"]),
            unit_amount=int(line.price["unit_amount"]),
        )
        for line in lines
    ]
    collection_method = (
        str(subscription["collection_method"]) if subscription else "charge_automatically"
    )
    days_until_due = subscription.get("days_until_due") if subscription else None
    built = objects.invoice(
        invoice_id,
        now,
        customer=customer,
        currency=currency,
        subscription_id=subscription["id"] if subscription else None,
        billing_reason=billing_reason,
        collection_method=collection_method,
        period_start=period_start,
        period_end=period_end,
        lines=built_lines,
        default_payment_method=subscription.get("default_payment_method") if subscription else None,
        default_mandate=mandate_for(account, subscription),
        description=None,
        due_date=now + int(days_until_due) * 86_400 if days_until_due else None,
        test_clock=customer["test_clock"],
        metadata={},
    )
    if subscription and subscription.get("payment_settings", {}).get("payment_method_options"):
        built["payment_settings"]["payment_method_options"] = subscription["payment_settings"][
            "payment_method_options"
        ]
        built["payment_settings"]["payment_method_types"] = subscription["payment_settings"][
            "payment_method_types"
        ]
    _apply_customer_balance(built, customer)
    return built


def mandate_for(account: Account, subscription: Json | None) -> str | None:
    if not subscription or not subscription.get("default_payment_method"):
        return None
    for mandate in account.all("mandate"):
        if mandate["payment_method"] == subscription["default_payment_method"]:
            return str(mandate["id"])
    return None


def balance_effect(balance: int, total: int) -> tuple[int, int]:
    """(amount_due, ending_balance): a credit balance (negative) pays part of the invoice,
    a debit balance is added to it, and a negative total becomes credit."""
    net = total + balance
    return max(net, 0), min(net, 0)


def _apply_customer_balance(invoice: Json, customer: Json) -> None:
    amount_due, _ = balance_effect(int(customer["balance"]), int(invoice["total"]))
    invoice["starting_balance"] = int(customer["balance"])
    invoice["amount_due"] = amount_due
    invoice["amount_remaining"] = amount_due


def create_invoice(
    state: State,
    account: Account,
    customer: Json,
    *,
    subscription: Json | None,
    billing_reason: str,
    lines: list[LineSpec],
    period_start: int,
    period_end: int,
    now: int,
    include_pending_items: bool = True,
) -> Json:
    """Store a draft invoice, pulling in the customer's pending invoice items."""
    invoice_id = state.new_id("in")
    attached: list[Json] = []
    if include_pending_items:
        attached = pending_items(
            account, str(customer["id"]), subscription["id"] if subscription else None
        )
        lines = [*(item_line(account, item) for item in attached), *lines]
    invoice = build_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason=billing_reason,
        lines=lines,
        period_start=period_start,
        period_end=period_end,
        now=now,
        invoice_id=invoice_id,
    )
    for item in attached:
        item["invoice"] = invoice_id
    account.put(invoice)
    events.emit(state, account, "invoice.created", invoice, created=now)
    return invoice


def finalize(state: State, account: Account, invoice: Json, now: int) -> None:
    """Draft -> open: number, customer balance applied, hosted page and PDF links."""
    if invoice["status"] != "draft":
        raise errors.invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    customer = account.get("customer", str(invoice["customer"]))
    balance = int(customer["balance"])
    amount_due, ending_balance = balance_effect(balance, int(invoice["total"]))
    invoice["starting_balance"] = balance
    invoice["ending_balance"] = ending_balance
    invoice["amount_due"] = amount_due
    invoice["amount_remaining"] = amount_due
    customer["balance"] = ending_balance
    sequence = int(customer["next_invoice_sequence"])
    invoice["number"] = f"{customer['invoice_prefix']}-{sequence:04d}"
    customer["next_invoice_sequence"] = sequence + 1
    invoice["status"] = "open"
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    token = state.new_secret("", 40)
    state.public_links[token] = (account.id, str(invoice["id"]))
    invoice["hosted_invoice_url"] = f"{state.public_base_url}/invoices/{token}"
    invoice["invoice_pdf"] = f"{state.public_base_url}/invoices/{token}/pdf"
    events.emit(state, account, "invoice.finalized", invoice, created=now)
    if amount_due == 0:
        _mark_paid(state, account, invoice, now)


def _mark_paid(state: State, account: Account, invoice: Json, now: int) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["paid_at"] = now
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    invoice["attempted"] = True
    events.emit(state, account, "invoice.paid", invoice, created=now)
    events.emit(state, account, "invoice.payment_succeeded", invoice, created=now)


def payment_method_for(account: Account, invoice: Json, override: str | None) -> Json | None:
    candidates = [
        override,
        invoice.get("default_payment_method"),
        account.get("customer", str(invoice["customer"]))["invoice_settings"][
            "default_payment_method"
        ],
    ]
    for candidate in candidates:
        if candidate:
            return account.get("payment_method", str(candidate), "payment_method")
    return None


@dataclass
class PaymentResult:
    paid: bool
    outcome: payments.PaymentOutcome | None


def attempt_payment(
    state: State, account: Account, invoice: Json, now: int, *, payment_method: Json | None = None
) -> PaymentResult:
    """Charge an open invoice once; on failure schedule the next automatic retry."""
    if invoice["status"] != "open":
        raise errors.invalid_request(
            "Invoice is already paid"
            if invoice["status"] == "paid"
            else f"You cannot pay an invoice with status {invoice['status']}.",
            code="invoice_not_payable" if invoice["status"] != "paid" else None,
        )
    method = payment_method or payment_method_for(account, invoice, None)
    invoice["attempt_count"] = int(invoice["attempt_count"]) + 1
    invoice["attempted"] = True
    subscription_id = invoice.get("subscription")
    description = (
        "Subscription creation"
        if invoice["billing_reason"] == "subscription_create"
        else (
            "Subscription update"
            if invoice["billing_reason"] == "subscription_update"
            else "Subscription cycle"
            if subscription_id
            else f"Invoice {invoice['number']}"
        )
    )
    outcome = payments.collect(
        state,
        account,
        customer_id=str(invoice["customer"]),
        payment_method=method,
        amount=int(invoice["amount_remaining"]),
        currency=str(invoice["currency"]),
        description=description,
        now=now,
    )
    account.put(
        objects.invoice_payment(
            state.new_id("inpay"),
            now,
            invoice_id=str(invoice["id"]),
            payment_intent_id=str(outcome.payment_intent["id"]),
            amount=int(invoice["amount_remaining"]),
            currency=str(invoice["currency"]),
        )
    )
    payment_record = _latest_invoice_payment(account, str(outcome.payment_intent["id"]))
    if outcome.decline is None:
        payment_record["status"] = "paid"
        payment_record["amount_paid"] = payment_record["amount_requested"]
        payment_record["status_transitions"]["paid_at"] = now
        _mark_paid(state, account, invoice, now)
        return PaymentResult(True, outcome)
    payment_record["status"] = "failed"
    attempts = int(invoice["attempt_count"])
    automatic = invoice["collection_method"] == "charge_automatically" and subscription_id
    if automatic and attempts < MAX_ATTEMPTS:
        invoice["next_payment_attempt"] = now + RETRY_DELAYS_DAYS[attempts - 1] * 86_400
    else:
        invoice["next_payment_attempt"] = None
    events.emit(state, account, "invoice.payment_failed", invoice, created=now)
    return PaymentResult(False, outcome)


def _latest_invoice_payment(account: Account, payment_intent_id: str) -> Json:
    for record in account.all("invoice_payment"):
        if record["payment"]["payment_intent"] == payment_intent_id:
            return record
    raise AssertionError(payment_intent_id)


def void(state: State, account: Account, invoice: Json, now: int) -> None:
    if invoice["status"] not in ("open", "uncollectible"):
        raise errors.invalid_request(
            "You can only pass in open or uncollectible invoices. "
            f"This invoice is {invoice['status']}.",
            code="invoice_not_editable",
        )
    invoice["status"] = "void"
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["voided_at"] = now
    events.emit(state, account, "invoice.voided", invoice, created=now)


def mark_uncollectible(state: State, account: Account, invoice: Json, now: int) -> None:
    if invoice["status"] != "open":
        raise errors.invalid_request(
            "You can only mark open invoices as uncollectible. "
            f"This invoice is {invoice['status']}.",
            code="invoice_not_editable",
        )
    invoice["status"] = "uncollectible"
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["marked_uncollectible_at"] = now
    events.emit(state, account, "invoice.marked_uncollectible", invoice, created=now)
