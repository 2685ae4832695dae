"""Subscriptions: create, retrieve, list, update (price changes with proration, cancel at
period end, pause collection), cancel, and the subscription items they carry."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, lifecycle, params, render
from stripe_emulator.lifecycle import ItemRequest
from stripe_emulator.routing import Call, Router
from stripe_emulator.state import Account

Json = dict[str, Any]

router = Router()

PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
PAUSE_BEHAVIORS = ("keep_as_draft", "mark_uncollectible", "void")


def item_requests(
    account: Account, raw_items: list[Any], param: str = "items"
) -> list[ItemRequest]:
    requests = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise errors.invalid_param(f"{param}[{index}]", f"Invalid hash: {param}[{index}]")
        price_id = raw.get("price")
        price = (
            account.get("price", str(price_id), f"{param}[{index}][price]") if price_id else None
        )
        if price is not None and not price["active"]:
            raise errors.invalid_param(
                f"{param}[{index}][price]",
                f"The price specified ({price_id}) is inactive. "
                "This field only accepts active prices.",
            )
        quantity = raw.get("quantity")
        metadata = raw.get("metadata")
        requests.append(
            ItemRequest(
                item_id=str(raw["id"]) if raw.get("id") else None,
                price=price,
                quantity=int(quantity) if quantity not in (None, "") else None,
                deleted=raw.get("deleted") in ("true", True),
                metadata={str(key): str(value) for key, value in metadata.items()}
                if isinstance(metadata, dict)
                else None,
            )
        )
    return requests


def _owned_method(
    account: Account, customer: Json, method_id: str | None, param: str
) -> Json | None:
    if not method_id:
        return None
    method = account.find("payment_method", method_id)
    if method is None or method["customer"] != customer["id"]:
        raise errors.invalid_param(
            param,
            f"The customer does not have a payment method with the ID {method_id}. The payment "
            "method must be attached to the customer.",
            "resource_missing",
        )
    return method


def _behavior(call_params: params.Params, name: str = "proration_behavior") -> str:
    behavior = params.text(call_params, name) or "create_prorations"
    if behavior not in PRORATION_BEHAVIORS:
        raise errors.invalid_param(
            name, f"Invalid {name}: must be one of {', '.join(PRORATION_BEHAVIORS)}"
        )
    return behavior


@router.add("POST", "/v1/subscriptions")
def create_subscription(call: Call) -> Json:
    state, account = call.state, call.account
    customer = account.get("customer", params.required_text(call.params, "customer"), "customer")
    now = lifecycle.now_for(state, account, customer)
    requests = item_requests(account, params.sequence(call.params, "items"))
    if not requests:
        raise errors.missing_param("items")
    trial_end_param = call.params.get("trial_end")
    trial_days = params.integer(call.params, "trial_period_days")
    trial_end: int | None = None
    if trial_end_param not in (None, "", "now"):
        trial_end = params.integer(call.params, "trial_end")
    elif trial_days:
        trial_end = now + trial_days * 86_400
    collection_method = params.text(call.params, "collection_method") or "charge_automatically"
    subscription = lifecycle.create(
        state,
        account,
        customer,
        items=requests,
        default_payment_method=_owned_method(
            account,
            customer,
            params.text(call.params, "default_payment_method"),
            "default_payment_method",
        ),
        trial_end=trial_end,
        payment_behavior=params.text(call.params, "payment_behavior") or "allow_incomplete",
        collection_method=collection_method,
        days_until_due=params.integer(call.params, "days_until_due"),
        metadata=params.metadata(call.params),
        description=params.text(call.params, "description"),
        cancel_at_period_end=params.boolean(call.params, "cancel_at_period_end"),
        now=now,
    )
    return render.respond(account, subscription, call.params)


@router.add("GET", "/v1/subscriptions/{id}")
def retrieve_subscription(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("subscription", call.arg("id")), call.params
    )


@router.add("GET", "/v1/subscriptions")
def list_subscriptions(call: Call) -> Json:
    customer = params.text(call.params, "customer")
    status = params.text(call.params, "status")
    price = params.text(call.params, "price")
    clock = params.text(call.params, "test_clock")
    collection_method = params.text(call.params, "collection_method")

    def wanted(subscription: Json) -> bool:
        if status is None:
            status_ok = subscription["status"] not in ("canceled", "incomplete_expired")
        elif status == "all":
            status_ok = True
        elif status == "ended":
            status_ok = subscription["status"] in ("canceled", "incomplete_expired")
        else:
            status_ok = subscription["status"] == status
        return (
            status_ok
            and (customer is None or subscription["customer"] == customer)
            and (
                price is None
                or any(item["price"] == price for item in subscription["items"]["data"])
            )
            and (clock is None or subscription["test_clock"] == clock)
            and (
                collection_method is None or subscription["collection_method"] == collection_method
            )
            and params.created_filter_matches(call.params, int(subscription["created"]))
        )

    found = [
        subscription for subscription in call.account.all("subscription") if wanted(subscription)
    ]
    return render.paginate(call.account, found, call.params, "/v1/subscriptions")


@router.add("POST", "/v1/subscriptions/{id}")
def update_subscription(call: Call) -> Json:
    state, account = call.state, call.account
    subscription = account.get("subscription", call.arg("id"))
    if subscription["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param="id" if "metadata" not in call.params else None,
        )
    customer = account.get("customer", str(subscription["customer"]))
    now = lifecycle.now_for(state, account, customer)
    before = render.render(account, subscription)
    behavior = _behavior(call.params)
    proration_date = params.integer(call.params, "proration_date") or now
    requests = item_requests(account, params.sequence(call.params, "items"))
    if requests:
        change = lifecycle.plan_change(
            account, subscription, requests, at=proration_date, behavior=behavior
        )
        if change.changed:
            lifecycle.apply_plan_change(
                state,
                account,
                subscription,
                change,
                at=proration_date,
                behavior=behavior,
                payment_behavior=params.text(call.params, "payment_behavior") or "allow_incomplete",
            )
    if "cancel_at_period_end" in call.params:
        cancel = params.boolean(call.params, "cancel_at_period_end")
        subscription["cancel_at_period_end"] = cancel
        subscription["cancel_at"] = lifecycle.period_of(subscription)[1] if cancel else None
        subscription["canceled_at"] = now if cancel else None
    if "cancel_at" in call.params:
        cancel_at = params.integer(call.params, "cancel_at")
        subscription["cancel_at"] = cancel_at
        subscription["canceled_at"] = now if cancel_at else None
        subscription["cancel_at_period_end"] = False
    details = params.mapping(call.params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            subscription["cancellation_details"][key] = details[key] or None
    if "pause_collection" in call.params:
        pause = call.params["pause_collection"]
        if pause == "":
            subscription["pause_collection"] = None
        else:
            pause_behavior = params.text(
                params.mapping(call.params, "pause_collection"), "behavior"
            )
            if pause_behavior not in PAUSE_BEHAVIORS:
                raise errors.invalid_param(
                    "pause_collection[behavior]",
                    "Invalid pause_collection[behavior]: must be one of "
                    + ", ".join(PAUSE_BEHAVIORS),
                )
            resumes_at = params.integer(
                params.mapping(call.params, "pause_collection"), "resumes_at"
            )
            subscription["pause_collection"] = {
                "behavior": pause_behavior,
                "resumes_at": resumes_at,
            }
    if "default_payment_method" in call.params:
        method = _owned_method(
            account,
            customer,
            params.text(call.params, "default_payment_method"),
            "default_payment_method",
        )
        subscription["default_payment_method"] = method["id"] if method else None
        if method is not None and method["type"] == "upi":
            lifecycle.ensure_mandate_for(
                state,
                account,
                method,
                lifecycle.price_of(account, subscription["items"]["data"][0]),
                now,
            )
    if "collection_method" in call.params:
        subscription["collection_method"] = params.required_text(call.params, "collection_method")
    if "description" in call.params:
        subscription["description"] = params.text(call.params, "description") or None
    subscription["metadata"] = params.metadata(call.params, subscription["metadata"])
    after = render.render(account, subscription)
    previous = {key: before[key] for key in before if before[key] != after[key]}
    if previous:
        events.emit(
            state,
            account,
            "customer.subscription.updated",
            subscription,
            previous_attributes=previous,
            created=now,
        )
    return render.respond(account, subscription, call.params)


@router.add("DELETE", "/v1/subscriptions/{id}")
def cancel_subscription(call: Call) -> Json:
    state, account = call.state, call.account
    subscription = account.get("subscription", call.arg("id"))
    if subscription["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(
            f"No such subscription: '{subscription['id']}'. "
            "This subscription has already been canceled.",
            code="resource_missing",
            status=404,
        )
    customer = account.get("customer", str(subscription["customer"]))
    now = lifecycle.now_for(state, account, customer)
    details = params.mapping(call.params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            subscription["cancellation_details"][key] = details[key] or None
    if params.boolean(call.params, "prorate") and subscription["status"] == "active":
        lifecycle.credit_unused_time(state, account, subscription, now)
    lifecycle.end(state, account, subscription, now, reason="cancellation_requested")
    if params.boolean(call.params, "invoice_now"):
        lifecycle.invoice_pending_now(state, account, customer, subscription, now)
    return render.respond(account, subscription, call.params)


@router.add("GET", "/v1/subscription_items")
def list_subscription_items(call: Call) -> Json:
    subscription = call.account.get(
        "subscription", params.required_text(call.params, "subscription"), "subscription"
    )
    return render.paginate(
        call.account,
        subscription["items"]["data"],
        call.params,
        f"/v1/subscription_items?subscription={subscription['id']}",
    )


@router.add("GET", "/v1/subscription_items/{id}")
def retrieve_subscription_item(call: Call) -> Json:
    for subscription in call.account.all("subscription"):
        for item in subscription["items"]["data"]:
            if item["id"] == call.arg("id"):
                return render.respond(call.account, item, call.params)
    raise errors.no_such("subscription item", call.arg("id"))
