"""Billing portal sessions, webhook endpoints, events, test clocks and accounts."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, lifecycle, objects, params, render
from stripe_emulator.routing import Call, Router

Json = dict[str, Any]

router = Router()

PORTAL_FLOWS = (
    "payment_method_update",
    "subscription_cancel",
    "subscription_update",
    "subscription_update_confirm",
)


# billing portal


@router.add("POST", "/v1/billing_portal/sessions")
def create_portal_session(call: Call) -> Json:
    state, account = call.state, call.account
    customer = account.get("customer", params.required_text(call.params, "customer"), "customer")
    flow_data = params.mapping(call.params, "flow_data")
    flow: Json | None = None
    if flow_data:
        flow_type = str(flow_data.get("type") or "")
        if flow_type not in PORTAL_FLOWS:
            raise errors.invalid_param("flow_data[type]", f"Invalid flow_data[type]: {flow_type}")
        after = flow_data.get("after_completion") or {}
        after_type = str(after.get("type") or "portal_homepage")
        redirect = after.get("redirect") or {}
        flow = {
            "after_completion": {
                "hosted_confirmation": {"custom_message": None}
                if after_type == "hosted_confirmation"
                else None,
                "redirect": {"return_url": redirect.get("return_url")}
                if after_type == "redirect"
                else None,
                "type": after_type,
            },
            "subscription_cancel": None,
            "subscription_update": None,
            "subscription_update_confirm": None,
            "type": flow_type,
        }
        if flow_type == "subscription_cancel":
            cancel = flow_data.get("subscription_cancel") or {}
            subscription = account.get(
                "subscription",
                str(cancel.get("subscription")),
                "flow_data[subscription_cancel][subscription]",
            )
            flow["subscription_cancel"] = {"retention": None, "subscription": subscription["id"]}
    session_id = state.new_id("bps")
    token = state.new_secret("", 40)
    state.public_links[token] = (account.id, session_id)
    session = objects.portal_session(
        session_id,
        state.wall_time(),
        customer_id=str(customer["id"]),
        return_url=params.text(call.params, "return_url"),
        url=f"{state.public_base_url}/billing_portal/{token}",
        flow=flow,
        locale=params.text(call.params, "locale"),
    )
    account.put(session)
    return render.respond(account, session, call.params)


# webhook endpoints


@router.add("POST", "/v1/webhook_endpoints")
def create_webhook_endpoint(call: Call) -> Json:
    state, account = call.state, call.account
    url = params.required_text(call.params, "url")
    enabled_events = [str(name) for name in params.sequence(call.params, "enabled_events")]
    if not enabled_events:
        raise errors.missing_param("enabled_events")
    endpoint = objects.webhook_endpoint(
        state.new_id("we"),
        state.wall_time(),
        url=url,
        enabled_events=enabled_events,
        description=params.text(call.params, "description"),
        api_version=params.text(call.params, "api_version"),
        metadata=params.metadata(call.params),
    )
    account.put(endpoint)
    # The signing secret is kept beside the endpoint: Stripe shows it only on creation.
    secret = state.new_secret("whsec_")
    account.table("webhook_secret")[endpoint["id"]] = {"id": endpoint["id"], "secret": secret}
    created = render.respond(account, endpoint, call.params)
    created["secret"] = secret
    return created


@router.add("GET", "/v1/webhook_endpoints/{id}")
def retrieve_webhook_endpoint(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("webhook_endpoint", call.arg("id")), call.params
    )


@router.add("POST", "/v1/webhook_endpoints/{id}")
def update_webhook_endpoint(call: Call) -> Json:
    endpoint = call.account.get("webhook_endpoint", call.arg("id"))
    if "url" in call.params:
        endpoint["url"] = params.required_text(call.params, "url")
    if "enabled_events" in call.params:
        endpoint["enabled_events"] = [
            str(name) for name in params.sequence(call.params, "enabled_events")
        ]
    if "description" in call.params:
        endpoint["description"] = params.text(call.params, "description") or None
    if "disabled" in call.params:
        endpoint["status"] = "disabled" if params.boolean(call.params, "disabled") else "enabled"
    endpoint["metadata"] = params.metadata(call.params, endpoint["metadata"])
    return render.respond(call.account, endpoint, call.params)


@router.add("GET", "/v1/webhook_endpoints")
def list_webhook_endpoints(call: Call) -> Json:
    return render.paginate(
        call.account, call.account.all("webhook_endpoint"), call.params, "/v1/webhook_endpoints"
    )


@router.add("DELETE", "/v1/webhook_endpoints/{id}")
def delete_webhook_endpoint(call: Call) -> Json:
    endpoint = call.account.get("webhook_endpoint", call.arg("id"))
    del call.account.table("webhook_endpoint")[endpoint["id"]]
    call.account.table("webhook_secret").pop(endpoint["id"], None)
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


# events


@router.add("GET", "/v1/events/{id}")
def retrieve_event(call: Call) -> Json:
    return render.respond(call.account, call.account.get("event", call.arg("id")), call.params)


@router.add("GET", "/v1/events")
def list_events(call: Call) -> Json:
    event_type = params.text(call.params, "type")
    types = [str(name) for name in params.sequence(call.params, "types")]

    def type_matches(name: str) -> bool:
        if event_type is not None:
            if event_type.endswith(".*"):
                return name.startswith(event_type[:-1])
            return name == event_type
        return not types or name in types

    created = params.created_filter(call.params)
    found = [
        event
        for event in call.account.events_created_from(created.lowest)
        if type_matches(str(event["type"])) and created.matches(int(event["created"]))
    ]
    return render.paginate(call.account, found, call.params, "/v1/events")


# test clocks


@router.add("POST", "/v1/test_helpers/test_clocks")
def create_test_clock(call: Call) -> Json:
    state, account = call.state, call.account
    frozen_time = params.integer(call.params, "frozen_time", required=True) or 0
    clock = objects.test_clock(
        state.new_id("clock"),
        state.wall_time(),
        frozen_time=frozen_time,
        name=params.text(call.params, "name"),
    )
    account.put(clock)
    events.emit(state, account, "test_helpers.test_clock.created", clock)
    return render.respond(account, clock, call.params)


@router.add("GET", "/v1/test_helpers/test_clocks/{id}")
def retrieve_test_clock(call: Call) -> Json:
    return render.respond(
        call.account, call.account.get("test_helpers.test_clock", call.arg("id")), call.params
    )


@router.add("GET", "/v1/test_helpers/test_clocks")
def list_test_clocks(call: Call) -> Json:
    return render.paginate(
        call.account,
        call.account.all("test_helpers.test_clock"),
        call.params,
        "/v1/test_helpers/test_clocks",
    )


@router.add("DELETE", "/v1/test_helpers/test_clocks/{id}")
def delete_test_clock(call: Call) -> Json:
    account = call.account
    clock = account.get("test_helpers.test_clock", call.arg("id"))
    # Deleting a clock deletes the customers on it and everything that hangs off them.
    for customer in list(account.all("customer")):
        if customer["test_clock"] == clock["id"]:
            del account.table("customer")[customer["id"]]
            account.deleted_ids.add(str(customer["id"]))
    for subscription in list(account.all("subscription")):
        if subscription["test_clock"] == clock["id"]:
            del account.table("subscription")[subscription["id"]]
    del account.table("test_helpers.test_clock")[clock["id"]]
    return {"id": clock["id"], "object": "test_helpers.test_clock", "deleted": True}


@router.add("POST", "/v1/test_helpers/test_clocks/{id}/advance")
def advance_test_clock(call: Call) -> Json:
    """Move the clock forward and run every renewal, retry and expiry due on the way.

    Stripe does this asynchronously (status `advancing`, then `ready`); the emulator runs it
    before answering, so the answer is already `ready` and polling code still works.
    """
    state, account = call.state, call.account
    clock = account.get("test_helpers.test_clock", call.arg("id"))
    target = params.integer(call.params, "frozen_time", required=True) or 0
    if target <= int(clock["frozen_time"]):
        raise errors.invalid_param(
            "frozen_time", "The frozen_time must be after the test clock's current frozen_time."
        )
    clock["status"] = "advancing"
    events.emit(
        state,
        account,
        "test_helpers.test_clock.advancing",
        clock,
        created=int(clock["frozen_time"]),
    )
    lifecycle.advance(state, account, target, clock_id=str(clock["id"]))
    clock["frozen_time"] = target
    clock["status"] = "ready"
    events.emit(state, account, "test_helpers.test_clock.ready", clock, created=target)
    return render.respond(account, clock, call.params)


# accounts (Connect)


def _account_object(call: Call, account_id: str) -> Json:
    target = call.state.accounts[account_id]
    return objects.account(
        target.id, target.created, email=target.email, restriction=target.restriction
    )


@router.add("GET", "/v1/account")
def retrieve_own_account(call: Call) -> Json:
    return _account_object(call, call.account.id)


@router.add("POST", "/v1/accounts")
def create_connected_account(call: Call) -> Json:
    if call.account.parent_id is not None:
        raise errors.invalid_request(
            "Connected accounts cannot create accounts.", code="platform_account_required"
        )
    created = call.state.create_connected_account(call.account, params.text(call.params, "email"))
    return _account_object(call, created.id)


@router.add("GET", "/v1/accounts/{id}")
def retrieve_connected_account(call: Call) -> Json:
    target = call.state.connected_account(call.account, call.arg("id"))
    return _account_object(call, target.id)


@router.add("GET", "/v1/accounts")
def list_connected_accounts(call: Call) -> Json:
    found = [
        _account_object(call, account.id)
        for account in call.state.accounts.values()
        if account.parent_id == call.account.id
    ]
    return render.paginate(call.account, found, call.params, "/v1/accounts")
