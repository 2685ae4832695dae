"""Turning stored objects into responses: computed fields, `expand[]`, list pagination."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from stripe_emulator import errors, objects, params
from stripe_emulator.state import Account, kind_of

Json = dict[str, Any]

DEFAULT_LIST_LIMIT = 10
MAX_LIST_LIMIT = 100


def render(account: Account, obj: Json) -> Json:
    """A deep copy of a stored object with its computed fields filled in."""
    rendered = copy.deepcopy(obj)
    kind = rendered.get("object")
    if kind == "subscription":
        for item in rendered["items"]["data"]:
            _embed_item_price(account, item)
    elif kind == "subscription_item":
        _embed_item_price(account, rendered)
    elif kind == "charge":
        refunds = sorted(
            (
                render(account, refund)
                for refund in account.all("refund")
                if refund["charge"] == rendered["id"]
            ),
            key=lambda refund: -int(refund["created"]),
        )
        rendered["refunds"] = objects.list_object(refunds, f"/v1/charges/{rendered['id']}/refunds")
    return rendered


def _embed_item_price(account: Account, item: Json) -> None:
    price_id = item["price"]
    if isinstance(price_id, str):
        price = account.get("price", price_id)
        item["price"] = copy.deepcopy(price)
        item["plan"] = objects.plan_from_price(price)


def expand_paths(request_params: params.Params) -> list[str]:
    return [str(path) for path in params.sequence(request_params, "expand")]


def expand(account: Account, obj: Json, paths: Iterable[str]) -> Json:
    for path in paths:
        _expand_path(account, obj, path.split("."))
    return obj


def _expand_path(account: Account, node: Any, segments: list[str]) -> None:
    if not segments:
        return
    if isinstance(node, list):
        for element in node:
            _expand_path(account, element, segments)
        return
    if not isinstance(node, dict):
        return
    head, rest = segments[0], segments[1:]
    if head not in node:
        raise errors.invalid_request(f"This property cannot be expanded ({head}).", param="expand")
    value = node[head]
    if isinstance(value, str):
        node[head] = _resolve(account, value)
        value = node[head]
    _expand_path(account, value, rest)


def _resolve(account: Account, object_id: str) -> Json | str:
    kind = kind_of(object_id)
    if kind is None:
        return object_id
    found = account.find(kind, object_id)
    if found is None:
        return object_id
    return render(account, found)


def respond(account: Account, obj: Json, request_params: params.Params) -> Json:
    """A single object as an endpoint returns it: rendered and expanded."""
    return expand(account, render(account, obj), expand_paths(request_params))


def newest_first(items: Iterable[Json]) -> list[Json]:
    """Stripe lists newest first; ties keep the most recently stored first."""
    ordered = list(items)
    ordered.reverse()
    ordered.sort(key=lambda item: -int(item.get("created") or 0))
    return ordered


def paginate(
    account: Account,
    items: Iterable[Json],
    request_params: params.Params,
    url: str,
) -> Json:
    """A `list` object: newest first, `limit`, `starting_after`/`ending_before`, `has_more`."""
    ordered = newest_first(items)
    limit = params.integer(request_params, "limit") or DEFAULT_LIST_LIMIT
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise errors.invalid_param("limit", "This value must be between 1 and 100.")
    starting_after = params.text(request_params, "starting_after")
    ending_before = params.text(request_params, "ending_before")
    ids = [str(item["id"]) for item in ordered]
    if starting_after:
        if starting_after not in ids:
            raise errors.no_such("object", starting_after, "starting_after")
        start = ids.index(starting_after) + 1
        window = ordered[start : start + limit]
        has_more = start + limit < len(ordered)
    elif ending_before:
        if ending_before not in ids:
            raise errors.no_such("object", ending_before, "ending_before")
        end = ids.index(ending_before)
        window = ordered[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        window = ordered[:limit]
        has_more = len(ordered) > limit
    paths = [path.removeprefix("data.") for path in expand_paths(request_params)]
    data = [expand(account, render(account, item), paths) for item in window]
    return objects.list_object(data, url, has_more)
