"""Invoices (list, retrieve, pay, void, previews), invoice items and invoice payments."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, invoicing, lifecycle, params, payments, render
from stripe_emulator.resources.subscriptions import _behavior, item_requests
from stripe_emulator.routing import Call, Router

Json = dict[str, Any]

router = Router()

INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


@router.add("POST", "/v1/invoices/create_preview")
def create_preview(call: Call) -> Json:
    state, account = call.state, call.account
    subscription_id = params.text(call.params, "subscription")
    details = params.mapping(call.params, "subscription_details")
    if not subscription_id:
        raise errors.invalid_request(
            "The emulator previews invoices of existing subscriptions: pass `subscription`.",
            param="subscription",
        )
    subscription = account.get("subscription", subscription_id, "subscription")
    customer_id = params.text(call.params, "customer")
    if customer_id and customer_id != subscription["customer"]:
        raise errors.invalid_param("customer", "The subscription does not belong to this customer.")
    customer = account.get("customer", str(subscription["customer"]))
    now = lifecycle.now_for(state, account, customer)
    behavior = _behavior(details, "proration_behavior")
    at = params.integer(details, "proration_date") or now
    requests = item_requests(
        account, params.sequence(details, "items"), "subscription_details[items]"
    )
    change = (
        lifecycle.plan_change(account, subscription, requests, at=at, behavior=behavior)
        if requests
        else None
    )
    if "cancel_at_period_end" in details and params.boolean(details, "cancel_at_period_end"):
        subscription = {**subscription, "cancel_at_period_end": True}
    invoice = lifecycle.preview(state, account, subscription, change, at=at, behavior=behavior)
    return render.expand(account, invoice, render.expand_paths(call.params))


@router.add("POST", "/v1/invoices")
def create_invoice(call: Call) -> Json:
    state, account = call.state, call.account
    customer = account.get("customer", params.required_text(call.params, "customer"), "customer")
    now = lifecycle.now_for(state, account, customer)
    subscription_id = params.text(call.params, "subscription")
    subscription = (
        account.get("subscription", subscription_id, "subscription") if subscription_id else None
    )
    pending = params.text(call.params, "pending_invoice_items_behavior") or "exclude"
    invoice = invoicing.create_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason="manual",
        lines=[],
        period_start=now,
        period_end=now,
        now=now,
        include_pending_items=pending == "include",
    )
    invoice["description"] = params.text(call.params, "description")
    invoice["metadata"] = params.metadata(call.params)
    if params.text(call.params, "collection_method") == "send_invoice":
        invoice["collection_method"] = "send_invoice"
        days = params.integer(call.params, "days_until_due") or 30
        invoice["due_date"] = now + days * 86_400
    if params.boolean(call.params, "auto_advance"):
        invoice["auto_advance"] = True
    return render.respond(account, invoice, call.params)


@router.add("GET", "/v1/invoices/{id}")
def retrieve_invoice(call: Call) -> Json:
    return render.respond(call.account, call.account.get("invoice", call.arg("id")), call.params)


@router.add("POST", "/v1/invoices/{id}")
def update_invoice(call: Call) -> Json:
    invoice = call.account.get("invoice", call.arg("id"))
    before = render.render(call.account, invoice)
    invoice["metadata"] = params.metadata(call.params, invoice["metadata"])
    if "description" in call.params:
        if invoice["status"] != "draft":
            raise errors.invalid_request(
                "You can only update the description of a draft invoice.",
                code="invoice_not_editable",
            )
        invoice["description"] = params.text(call.params, "description") or None
    previous = {key: before[key] for key in before if before[key] != invoice[key]}
    events.emit(call.state, call.account, "invoice.updated", invoice, previous_attributes=previous)
    return render.respond(call.account, invoice, call.params)


@router.add("GET", "/v1/invoices")
def list_invoices(call: Call) -> Json:
    customer = params.text(call.params, "customer")
    subscription = params.text(call.params, "subscription")
    status = params.text(call.params, "status")
    collection_method = params.text(call.params, "collection_method")
    if status is not None and status not in INVOICE_STATUSES:
        raise errors.invalid_param(
            "status", f"Invalid status: must be one of {', '.join(INVOICE_STATUSES)}"
        )
    found = [
        invoice
        for invoice in call.account.all("invoice")
        if (customer is None or invoice["customer"] == customer)
        and (subscription is None or invoice["subscription"] == subscription)
        and (status is None or invoice["status"] == status)
        and (collection_method is None or invoice["collection_method"] == collection_method)
        and params.created_filter_matches(call.params, int(invoice["created"]))
        and params.created_filter_matches(call.params, int(invoice["due_date"] or 0), "due_date")
    ]
    return render.paginate(call.account, found, call.params, "/v1/invoices")


@router.add("GET", "/v1/invoices/{id}/lines")
def list_invoice_lines(call: Call) -> Json:
    invoice = call.account.get("invoice", call.arg("id"))
    lines = list(reversed(invoice["lines"]["data"]))
    return render.paginate(call.account, lines, call.params, f"/v1/invoices/{invoice['id']}/lines")


@router.add("POST", "/v1/invoices/{id}/finalize")
def finalize_invoice(call: Call) -> Json:
    invoice = call.account.get("invoice", call.arg("id"))
    customer = call.account.get("customer", str(invoice["customer"]))
    invoicing.finalize(
        call.state, call.account, invoice, lifecycle.now_for(call.state, call.account, customer)
    )
    return render.respond(call.account, invoice, call.params)


@router.add("POST", "/v1/invoices/{id}/pay")
def pay_invoice(call: Call) -> Json:
    """Retry collecting an invoice now; a decline answers 402 and leaves the invoice open."""
    state, account = call.state, call.account
    invoice = account.get("invoice", call.arg("id"))
    customer = account.get("customer", str(invoice["customer"]))
    now = lifecycle.now_for(state, account, customer)
    if invoice["status"] == "draft":
        invoicing.finalize(state, account, invoice, now)
        if invoice["status"] == "paid":
            return render.respond(account, invoice, call.params)
    if params.boolean(call.params, "paid_out_of_band"):
        if invoice["status"] != "open":
            raise errors.invalid_request("Invoice is already paid", code="invoice_not_payable")
        invoice["amount_paid"] = invoice["amount_remaining"]
        invoice["amount_remaining"] = 0
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = now
        invoice["next_payment_attempt"] = None
        events.emit(state, account, "invoice.paid", invoice, created=now)
        _settle(call, invoice, True, now)
        return render.respond(account, invoice, call.params)
    method_id = params.text(call.params, "payment_method")
    method = None
    if method_id:
        method = account.get("payment_method", method_id, "payment_method")
    elif invoicing.payment_method_for(account, invoice, None) is None:
        raise errors.invalid_request(
            "This customer has no attached payment source or default payment method. Please "
            "consider adding a default payment method.",
            code="resource_missing",
        )
    result = invoicing.attempt_payment(state, account, invoice, now, payment_method=method)
    _settle(call, invoice, result.paid, now)
    if not result.paid:
        assert result.outcome is not None
        raise payments.declined_error(result.outcome)
    return render.respond(account, invoice, call.params)


def _settle(call: Call, invoice: Json, paid: bool, now: int) -> None:
    if not invoice["subscription"]:
        return
    subscription = call.account.find("subscription", str(invoice["subscription"]))
    if subscription is not None and subscription["status"] not in (
        "canceled",
        "incomplete_expired",
    ):
        lifecycle.settle_status(call.state, call.account, subscription, paid, now)


@router.add("POST", "/v1/invoices/{id}/void")
def void_invoice(call: Call) -> Json:
    invoice = call.account.get("invoice", call.arg("id"))
    customer = call.account.get("customer", str(invoice["customer"]))
    invoicing.void(
        call.state, call.account, invoice, lifecycle.now_for(call.state, call.account, customer)
    )
    return render.respond(call.account, invoice, call.params)


@router.add("POST", "/v1/invoices/{id}/mark_uncollectible")
def mark_uncollectible(call: Call) -> Json:
    invoice = call.account.get("invoice", call.arg("id"))
    customer = call.account.get("customer", str(invoice["customer"]))
    invoicing.mark_uncollectible(
        call.state, call.account, invoice, lifecycle.now_for(call.state, call.account, customer)
    )
    return render.respond(call.account, invoice, call.params)


@router.add("GET", "/v1/invoiceitems")
def list_invoice_items(call: Call) -> Json:
    customer = params.text(call.params, "customer")
    invoice = params.text(call.params, "invoice")
    pending = call.params.get("pending")
    found = [
        item
        for item in call.account.all("invoiceitem")
        if (customer is None or item["customer"] == customer)
        and (invoice is None or item["invoice"] == invoice)
        and (pending is None or (item["invoice"] is None) == params.boolean(call.params, "pending"))
    ]
    return render.paginate(call.account, found, call.params, "/v1/invoiceitems")


@router.add("GET", "/v1/invoiceitems/{id}")
def retrieve_invoice_item(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("invoiceitem", call.arg("id")), call.params
    )


@router.add("GET", "/v1/invoice_payments")
def list_invoice_payments(call: Call) -> Json:
    invoice = params.text(call.params, "invoice")
    payment = params.mapping(call.params, "payment")
    intent = payment.get("payment_intent")
    found = [
        record
        for record in call.account.all("invoice_payment")
        if (invoice is None or record["invoice"] == invoice)
        and (intent is None or record["payment"]["payment_intent"] == intent)
    ]
    return render.paginate(call.account, found, call.params, "/v1/invoice_payments")


@router.add("GET", "/v1/invoice_payments/{id}")
def retrieve_invoice_payment(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("invoice_payment", call.arg("id")), call.params
    )
