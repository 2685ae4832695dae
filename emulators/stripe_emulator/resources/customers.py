"""Customers (with search by email) and payment methods."""

from __future__ import annotations

import re
from typing import Any

from stripe_emulator import errors, events, lifecycle, objects, params, payments, render
from stripe_emulator.lifecycle import now_for
from stripe_emulator.routing import Call, Router

Json = dict[str, Any]

router = Router()

_CLAUSE = re.compile(
    r"""\s*(?P<field>metadata\[['"](?P<key>[^'"]+)['"]\]|[a-z_]+)\s*(?P<op>:|~)\s*['"](?P<value>[^'"]*)['"]\s*"""
)


def _customer_fields(call: Call, customer: Json) -> None:
    for name in ("email", "name", "phone", "description"):
        if name in call.params:
            customer[name] = params.text(call.params, name) or None
    if "preferred_locales" in call.params:
        customer["preferred_locales"] = [
            str(locale) for locale in params.sequence(call.params, "preferred_locales")
        ]
    customer["metadata"] = params.metadata(call.params, customer["metadata"])
    settings = params.mapping(call.params, "invoice_settings")
    if "default_payment_method" in settings:
        method_id = settings["default_payment_method"]
        if method_id:
            method = call.account.get(
                "payment_method", str(method_id), "invoice_settings[default_payment_method]"
            )
            if method["customer"] != customer["id"]:
                raise errors.invalid_param(
                    "invoice_settings[default_payment_method]",
                    f"No such PaymentMethod: '{method_id}'; It's possible this PaymentMethod "
                    "exists on one of your connected accounts, in which case you should retry "
                    "this request on that connected account.",
                    "resource_missing",
                )
        customer["invoice_settings"]["default_payment_method"] = method_id or None


@router.add("POST", "/v1/customers")
def create_customer(call: Call) -> Json:
    state, account = call.state, call.account
    clock_id = params.text(call.params, "test_clock")
    if clock_id:
        account.get("test_helpers.test_clock", clock_id, "test_clock")
    customer_id = state.new_id("cus", 14)
    customer = objects.customer(
        customer_id,
        state.wall_time(),
        email=None,
        name=None,
        phone=None,
        description=None,
        metadata={},
        invoice_prefix=customer_id[4:12].upper(),
        test_clock=clock_id,
        preferred_locales=[],
    )
    now = now_for(state, account, customer)
    customer["created"] = now
    payment_method_id = params.text(call.params, "payment_method")
    if payment_method_id:
        method = payments.resolve_payment_method(
            state, account, payment_method_id, now, "payment_method"
        )
        payments.attach(state, account, method, customer)
    _customer_fields(call, customer)
    account.put(customer)
    events.emit(state, account, "customer.created", customer, created=now)
    return render.respond(account, customer, call.params)


@router.add("GET", "/v1/customers/search")
def search_customers(call: Call) -> Json:
    query = params.required_text(call.params, "query")
    matches = [customer for customer in call.account.all("customer") if _matches(query, customer)]
    limit = params.integer(call.params, "limit") or 10
    page = int(params.text(call.params, "page") or 0)
    ordered = render.newest_first(matches)
    window = ordered[page : page + limit]
    has_more = page + limit < len(ordered)
    paths = [path.removeprefix("data.") for path in render.expand_paths(call.params)]
    return {
        "object": "search_result",
        "data": [
            render.expand(call.account, render.render(call.account, item), paths) for item in window
        ],
        "has_more": has_more,
        "next_page": str(page + limit) if has_more else None,
        "url": "/v1/customers/search",
    }


def _matches(query: str, customer: Json) -> bool:
    """Stripe's search language, for the clauses used here: `field:'v'`, `field~'v'`,
    `metadata['k']:'v'`, joined by AND or OR (not both)."""
    joiner = " OR " if " OR " in query else " AND "
    results = []
    for clause in query.split(joiner):
        found = _CLAUSE.fullmatch(clause)
        if not found:
            raise errors.invalid_param("query", f"Invalid search query: {query}")
        if found["key"]:
            actual = customer["metadata"].get(found["key"])
        else:
            actual = customer.get(found["field"])
        expected = found["value"]
        if actual is None:
            results.append(False)
        elif found["op"] == ":":
            # Stripe matches email exactly but case-insensitively.
            results.append(str(actual).lower() == expected.lower())
        else:
            results.append(expected.lower() in str(actual).lower())
    return any(results) if joiner == " OR " else all(results)


@router.add("GET", "/v1/customers")
def list_customers(call: Call) -> Json:
    email = params.text(call.params, "email")
    clock = params.text(call.params, "test_clock")
    found = [
        customer
        for customer in call.account.all("customer")
        if (email is None or customer["email"] == email)
        and (clock is None or customer["test_clock"] == clock)
        and params.created_filter_matches(call.params, int(customer["created"]))
    ]
    return render.paginate(call.account, found, call.params, "/v1/customers")


def _customer(call: Call) -> Json:
    customer_id = call.arg("id")
    if customer_id in call.account.deleted_ids:
        return {"id": customer_id, "object": "customer", "deleted": True}
    return call.account.get("customer", customer_id)


@router.add("GET", "/v1/customers/{id}")
def retrieve_customer(call: Call) -> Json:
    customer = _customer(call)
    if customer.get("deleted"):
        return customer
    return render.respond(call.account, customer, call.params)


@router.add("POST", "/v1/customers/{id}")
def update_customer(call: Call) -> Json:
    customer = call.account.get("customer", call.arg("id"))
    before = render.render(call.account, customer)
    _customer_fields(call, customer)
    if "balance" in call.params:
        customer["balance"] = params.integer(call.params, "balance") or 0
    previous = {
        key: before[key] for key in before if before[key] != customer[key] and key != "metadata"
    }
    if before["metadata"] != customer["metadata"]:
        previous["metadata"] = before["metadata"]
    events.emit(
        call.state, call.account, "customer.updated", customer, previous_attributes=previous
    )
    return render.respond(call.account, customer, call.params)


@router.add("DELETE", "/v1/customers/{id}")
def delete_customer(call: Call) -> Json:
    account = call.account
    customer = account.get("customer", call.arg("id"))
    now = now_for(call.state, account, customer)
    for subscription in account.all("subscription"):
        if subscription["customer"] == customer["id"] and subscription["status"] not in (
            "canceled",
            "incomplete_expired",
        ):
            lifecycle.end(call.state, account, subscription, now, reason="cancellation_requested")
    del account.table("customer")[customer["id"]]
    account.deleted_ids.add(str(customer["id"]))
    events.emit(call.state, account, "customer.deleted", customer, created=now)
    return {"id": customer["id"], "object": "customer", "deleted": True}


@router.add("GET", "/v1/customers/{id}/payment_methods")
def list_customer_payment_methods(call: Call) -> Json:
    customer = call.account.get("customer", call.arg("id"))
    method_type = params.text(call.params, "type")
    found = [
        method
        for method in call.account.all("payment_method")
        if method["customer"] == customer["id"]
        and (method_type is None or method["type"] == method_type)
    ]
    return render.paginate(
        call.account, found, call.params, f"/v1/customers/{customer['id']}/payment_methods"
    )


# payment methods


@router.add("POST", "/v1/payment_methods")
def create_payment_method(call: Call) -> Json:
    state, account = call.state, call.account
    method_type = params.required_text(call.params, "type")
    now = state.wall_time()
    metadata = params.metadata(call.params)
    if method_type == "card":
        card = params.mapping(call.params, "card")
        token = str(card.get("token") or "")
        candidates = {
            "tok_visa": "pm_card_visa",
            "tok_mastercard": "pm_card_mastercard",
            "tok_chargeDeclined": "pm_card_chargeDeclined",
            "tok_chargeCustomerFail": "pm_card_chargeCustomerFail",
        }
        if token not in candidates:
            raise errors.invalid_param(
                "card[token]",
                "The emulator creates cards from test tokens only: " + ", ".join(candidates),
            )
        method = payments.card_from_token(state, account, candidates[token], now, metadata)
    elif method_type == "upi":
        upi = params.mapping(call.params, "upi")
        method = account.put(
            objects.upi_payment_method(
                state.new_id("pm"),
                now,
                vpa=str(upi.get("vpa") or "success@stripeupi"),
                customer_id=None,
                metadata=metadata,
            )
        )
    else:
        raise errors.invalid_param(
            "type", f"The emulator does not support payment method type {method_type}."
        )
    details = params.mapping(call.params, "billing_details")
    for key in ("email", "name", "phone"):
        if key in details:
            method["billing_details"][key] = details[key]
    return render.respond(account, method, call.params)


@router.add("GET", "/v1/payment_methods/{id}")
def retrieve_payment_method(call: Call) -> Json:
    method = payments.resolve_payment_method(
        call.state, call.account, call.arg("id"), call.state.wall_time(), "id"
    )
    return render.respond(call.account, method, call.params)


@router.add("GET", "/v1/payment_methods")
def list_payment_methods(call: Call) -> Json:
    customer_id = params.text(call.params, "customer")
    method_type = params.text(call.params, "type")
    found = [
        method
        for method in call.account.all("payment_method")
        if (customer_id is None or method["customer"] == customer_id)
        and (method_type is None or method["type"] == method_type)
    ]
    return render.paginate(call.account, found, call.params, "/v1/payment_methods")


@router.add("POST", "/v1/payment_methods/{id}/attach")
def attach_payment_method(call: Call) -> Json:
    state, account = call.state, call.account
    customer = account.get("customer", params.required_text(call.params, "customer"), "customer")
    now = now_for(state, account, customer)
    method = payments.resolve_payment_method(state, account, call.arg("id"), now, "payment_method")
    payments.attach(state, account, method, customer)
    return render.respond(account, method, call.params)


@router.add("POST", "/v1/payment_methods/{id}/detach")
def detach_payment_method(call: Call) -> Json:
    account = call.account
    method = account.get("payment_method", call.arg("id"))
    if method["customer"] is None:
        raise errors.invalid_request(
            "The payment method you provided is not attached to a customer so detachment "
            "is impossible.",
            param="payment_method",
        )
    customer = account.find("customer", str(method["customer"]))
    if customer and customer["invoice_settings"]["default_payment_method"] == method["id"]:
        customer["invoice_settings"]["default_payment_method"] = None
    method["customer"] = None
    events.emit(call.state, account, "payment_method.detached", method)
    return render.respond(account, method, call.params)


@router.add("GET", "/v1/mandates/{id}")
def retrieve_mandate(call: Call) -> Json:
    return render.respond(call.account, call.account.get("mandate", call.arg("id")), call.params)
