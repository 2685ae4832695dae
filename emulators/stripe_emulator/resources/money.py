"""Payment intents, charges and refunds."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, lifecycle, objects, params, payments, render
from stripe_emulator.routing import Call, Router

Json = dict[str, Any]

router = Router()


@router.add("POST", "/v1/payment_intents")
def create_payment_intent(call: Call) -> Json:
    state, account = call.state, call.account
    amount = params.integer(call.params, "amount", required=True) or 0
    if amount < 50:
        raise errors.invalid_param(
            "amount", "Amount must be at least $0.50 usd", "amount_too_small"
        )
    currency = params.required_text(call.params, "currency").lower()
    customer_id = params.text(call.params, "customer")
    customer = account.get("customer", customer_id, "customer") if customer_id else None
    now = lifecycle.now_for(state, account, customer) if customer else state.wall_time()
    method_id = params.text(call.params, "payment_method")
    method = (
        payments.resolve_payment_method(state, account, method_id, now, "payment_method")
        if method_id
        else None
    )
    if params.boolean(call.params, "confirm"):
        if method is None:
            raise errors.missing_param("payment_method")
        outcome = payments.collect(
            state,
            account,
            customer_id=customer_id,
            payment_method=method,
            amount=amount,
            currency=currency,
            description=params.text(call.params, "description"),
            now=now,
            metadata=params.metadata(call.params),
        )
        if outcome.decline is not None:
            error = payments.declined_error(outcome)
            error.extra["payment_intent"] = render.render(account, outcome.payment_intent)
            raise error
        return render.respond(account, outcome.payment_intent, call.params)
    payments.ensure_charges_enabled(account)
    intent = account.put(
        objects.payment_intent(
            state.new_id("pi"),
            now,
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            payment_method_id=method["id"] if method else None,
            payment_method_type=method["type"] if method else "card",
            description=params.text(call.params, "description"),
            metadata=params.metadata(call.params),
            client_secret="",
        )
    )
    intent["client_secret"] = f"{intent['id']}_secret_{state.new_id('cs', 16)[3:]}"
    events.emit(state, account, "payment_intent.created", intent, created=now)
    return render.respond(account, intent, call.params)


@router.add("POST", "/v1/payment_intents/{id}/confirm")
def confirm_payment_intent(call: Call) -> Json:
    state, account = call.state, call.account
    intent = account.get("payment_intent", call.arg("id"))
    if intent["status"] == "succeeded":
        raise errors.invalid_request(
            "This PaymentIntent's status is succeeded, so it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    payments.ensure_charges_enabled(account)
    method_id = params.text(call.params, "payment_method") or intent["payment_method"]
    if not method_id:
        raise errors.missing_param("payment_method")
    now = state.wall_time()
    method = payments.resolve_payment_method(state, account, str(method_id), now, "payment_method")
    outcome = payments.confirm(state, account, intent, method, now)
    if outcome.decline is not None:
        error = payments.declined_error(outcome)
        error.extra["payment_intent"] = render.render(account, intent)
        raise error
    return render.respond(account, intent, call.params)


@router.add("GET", "/v1/payment_intents/{id}")
def retrieve_payment_intent(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("payment_intent", call.arg("id")), call.params
    )


@router.add("GET", "/v1/payment_intents")
def list_payment_intents(call: Call) -> Json:
    customer = params.text(call.params, "customer")
    found = [
        intent
        for intent in call.account.all("payment_intent")
        if (customer is None or intent["customer"] == customer)
        and params.created_filter_matches(call.params, int(intent["created"]))
    ]
    return render.paginate(call.account, found, call.params, "/v1/payment_intents")


@router.add("GET", "/v1/charges/{id}")
def retrieve_charge(call: Call) -> Json:
    return render.respond(call.account, call.account.get("charge", call.arg("id")), call.params)


@router.add("GET", "/v1/charges")
def list_charges(call: Call) -> Json:
    customer = params.text(call.params, "customer")
    intent = params.text(call.params, "payment_intent")
    found = [
        charge
        for charge in call.account.all("charge")
        if (customer is None or charge["customer"] == customer)
        and (intent is None or charge["payment_intent"] == intent)
        and params.created_filter_matches(call.params, int(charge["created"]))
    ]
    return render.paginate(call.account, found, call.params, "/v1/charges")


@router.add("POST", "/v1/refunds")
def create_refund(call: Call) -> Json:
    state, account = call.state, call.account
    charge_id = params.text(call.params, "charge")
    intent_id = params.text(call.params, "payment_intent")
    if charge_id and intent_id:
        raise errors.invalid_request(
            "You cannot specify both the charge and payment_intent parameters.", param="charge"
        )
    if charge_id:
        charge = account.get("charge", charge_id, "charge")
    elif intent_id:
        intent = account.get("payment_intent", intent_id, "payment_intent")
        if not intent["latest_charge"] or intent["status"] != "succeeded":
            raise errors.invalid_request(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
        charge = account.get("charge", str(intent["latest_charge"]))
    else:
        raise errors.invalid_request(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    customer = account.find("customer", str(charge["customer"])) if charge["customer"] else None
    now = lifecycle.now_for(state, account, customer) if customer else state.wall_time()
    payments.ensure_charges_enabled(account)
    created = payments.refund(
        state,
        account,
        charge,
        amount=params.integer(call.params, "amount"),
        reason=params.text(call.params, "reason"),
        metadata=params.metadata(call.params),
        now=now,
    )
    return render.respond(account, created, call.params)


@router.add("GET", "/v1/refunds/{id}")
def retrieve_refund(call: Call) -> Json:
    return render.respond(call.account, call.account.get("refund", call.arg("id")), call.params)


@router.add("POST", "/v1/refunds/{id}")
def update_refund(call: Call) -> Json:
    refund = call.account.get("refund", call.arg("id"))
    refund["metadata"] = params.metadata(call.params, refund["metadata"])
    return render.respond(call.account, refund, call.params)


@router.add("GET", "/v1/refunds")
def list_refunds(call: Call) -> Json:
    charge = params.text(call.params, "charge")
    intent = params.text(call.params, "payment_intent")
    found = [
        refund
        for refund in call.account.all("refund")
        if (charge is None or refund["charge"] == charge)
        and (intent is None or refund["payment_intent"] == intent)
    ]
    return render.paginate(call.account, found, call.params, "/v1/refunds")
