"""Checkout Sessions in subscription mode: the hosted page where a customer subscribes to a
price with a new payment method (for UPI, a new eMandate). Completing the page
(``complete``) creates the subscription and emits ``checkout.session.completed``."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, lifecycle, objects, params, payments, render
from stripe_emulator.lifecycle import ItemRequest
from stripe_emulator.routing import Call, Router
from stripe_emulator.state import Account, State

Json = dict[str, Any]

router = Router()

# How long a session's page stays open, as Stripe's default (24 hours).
SESSION_LIFETIME_SECONDS = 24 * 3600


@router.add("POST", "/v1/checkout/sessions")
def create_session(call: Call) -> Json:
    state, account = call.state, call.account
    mode = params.required_text(call.params, "mode")
    if mode != "subscription":
        raise errors.invalid_param("mode", "The emulator supports mode=subscription only.")
    customer = account.get("customer", params.required_text(call.params, "customer"), "customer")
    line_items = params.sequence(call.params, "line_items")
    if len(line_items) != 1 or not isinstance(line_items[0], dict):
        raise errors.invalid_param("line_items", "Exactly one line item is supported.")
    price = account.get("price", str(line_items[0].get("price") or ""), "line_items[0][price]")
    lifecycle.interval_of(price)
    subscription_data = params.mapping(call.params, "subscription_data")
    types = [str(kind) for kind in params.sequence(call.params, "payment_method_types")]
    now = lifecycle.now_for(state, account, customer)
    session_id = state.new_id("cs_test", 58)
    token = state.new_secret("", 40)
    state.public_links[token] = (account.id, session_id)
    session = objects.checkout_session(
        session_id,
        now,
        customer_id=str(customer["id"]),
        mode=mode,
        currency=str(price["currency"]),
        amount=int(price["unit_amount"] or 0),
        payment_method_types=types or ["card"],
        success_url=params.text(call.params, "success_url"),
        cancel_url=params.text(call.params, "cancel_url"),
        url=f"{state.public_base_url}/checkout/{token}",
        expires_at=now + SESSION_LIFETIME_SECONDS,
        metadata=params.metadata(call.params),
    )
    # Kept beside the session (Stripe does not show them on it): what the page subscribes to.
    account.table("checkout_plan")[session_id] = {
        "id": session_id,
        "price": price["id"],
        "subscription_metadata": {
            str(key): str(value) for key, value in (subscription_data.get("metadata") or {}).items()
        },
    }
    account.put(session)
    return render.respond(account, session, call.params)


@router.add("GET", "/v1/checkout/sessions/{session}")
def retrieve_session(call: Call) -> Json:
    session = call.account.get("checkout.session", call.arg("session"), "session")
    return render.respond(call.account, session, call.params)


def complete(state: State, account: Account, session: Json, vpa: str) -> Json:
    """The customer finishes the page paying by UPI (``vpa``): a new payment method (its own
    mandate), the subscription to the session's price, the session complete."""
    if session["status"] != "open":
        raise errors.invalid_request("This Checkout Session is no longer open.")
    plan = account.table("checkout_plan")[session["id"]]
    customer = account.get("customer", str(session["customer"]))
    price = account.get("price", str(plan["price"]))
    now = lifecycle.now_for(state, account, customer)
    if "upi" in session["payment_method_types"]:
        method = account.put(
            objects.upi_payment_method(
                state.new_id("pm"), now, vpa=vpa, customer_id=None, metadata={}
            )
        )
    else:
        method = payments.card_from_token(state, account, "pm_card_visa", now, {})
    payments.attach(state, account, method, customer)
    subscription = lifecycle.create(
        state,
        account,
        customer,
        items=[ItemRequest(item_id=None, price=price, quantity=1, deleted=False, metadata=None)],
        default_payment_method=method,
        trial_end=None,
        payment_behavior="allow_incomplete",
        collection_method="charge_automatically",
        days_until_due=None,
        metadata=dict(plan["subscription_metadata"]),
        description=None,
        cancel_at_period_end=False,
        now=now,
    )
    session.update(
        {
            "status": "complete",
            "payment_status": "paid",
            "subscription": subscription["id"],
            "invoice": subscription.get("latest_invoice"),
        }
    )
    events.emit(state, account, "checkout.session.completed", session, created=now)
    return session
