"""Recording events: every state change becomes an `event` that is listed and delivered."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from stripe_emulator import objects, render
from stripe_emulator.state import API_VERSION, Account, State

Json = dict[str, Any]


@dataclass(frozen=True)
class RequestInfo:
    request_id: str | None
    idempotency_key: str | None


# The API request being served, so events can name it (`event.request`); None when the
# change comes from time passing (renewals, retries) as in Stripe.
current_request: ContextVar[RequestInfo | None] = ContextVar("current_request", default=None)


def emit(
    state: State,
    account: Account,
    event_type: str,
    obj: Json,
    *,
    previous_attributes: Json | None = None,
    created: int | None = None,
) -> Json:
    request = current_request.get()
    event = objects.event(
        state.new_id("evt"),
        created if created is not None else state.wall_time(),
        event_type=event_type,
        data_object=render.render(account, obj),
        previous_attributes=previous_attributes,
        api_version=API_VERSION,
        request_id=request.request_id if request else None,
        idempotency_key=request.idempotency_key if request else None,
        pending_webhooks=0,
        account_id=account.id if account.parent_id else None,
    )
    account.put(event)
    state.emit(account, event)
    return event


def changed(before: Json, after: Json, keys: list[str]) -> Json:
    """`previous_attributes`: the old values of the keys that changed."""
    return {key: before.get(key) for key in keys if before.get(key) != after.get(key)}
