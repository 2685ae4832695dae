"""Products (with marketing features) and prices (recurring, several currencies)."""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, objects, params, render
from stripe_emulator.routing import Call, Router
from stripe_emulator.state import Account, State

Json = dict[str, Any]

router = Router()


def _features(call: Call) -> list[Json]:
    return [
        {"name": str(feature["name"])}
        for feature in params.sequence(call.params, "marketing_features")
        if isinstance(feature, dict) and feature.get("name")
    ]


def create_product(
    state: State,
    account: Account,
    *,
    name: str,
    description: str | None = None,
    marketing_features: list[Json] | None = None,
    metadata: dict[str, str] | None = None,
    product_id: str | None = None,
    now: int | None = None,
) -> Json:
    product = objects.product(
        product_id or state.new_id("prod", 14),
        now if now is not None else state.wall_time(),
        name=name,
        description=description,
        active=True,
        marketing_features=marketing_features or [],
        metadata=metadata or {},
        unit_label=None,
        url=None,
    )
    if account.find("product", str(product["id"])):
        raise errors.invalid_param(
            "id", f"Product already exists: {product['id']}", "resource_already_exists"
        )
    account.put(product)
    events.emit(state, account, "product.created", product, created=product["created"])
    return product


def create_price(
    state: State,
    account: Account,
    *,
    product: Json,
    currency: str,
    unit_amount: int,
    interval: str | None,
    interval_count: int = 1,
    lookup_key: str | None = None,
    nickname: str | None = None,
    metadata: dict[str, str] | None = None,
    now: int | None = None,
) -> Json:
    if unit_amount < 0:
        raise errors.invalid_param("unit_amount", "Invalid non-negative integer")
    if interval is not None and interval not in ("day", "week", "month", "year"):
        raise errors.invalid_param(
            "recurring[interval]", f"Invalid recurring[interval]: {interval}"
        )
    if lookup_key:
        for existing in account.all("price"):
            if existing["lookup_key"] == lookup_key:
                raise errors.invalid_param(
                    "lookup_key",
                    f"A price (`{existing['id']}`) already uses that lookup key.",
                )
    price = objects.price(
        state.new_id("price"),
        now if now is not None else state.wall_time(),
        product_id=str(product["id"]),
        currency=currency.lower(),
        unit_amount=unit_amount,
        recurring=objects.recurring(interval, interval_count, None) if interval else None,
        active=True,
        lookup_key=lookup_key,
        nickname=nickname,
        metadata=metadata or {},
    )
    account.put(price)
    if product["default_price"] is None:
        product["default_price"] = price["id"]
    events.emit(state, account, "price.created", price, created=price["created"])
    return price


@router.add("POST", "/v1/products")
def create_product_route(call: Call) -> Json:
    product = create_product(
        call.state,
        call.account,
        name=params.required_text(call.params, "name"),
        description=params.text(call.params, "description"),
        marketing_features=_features(call),
        metadata=params.metadata(call.params),
        product_id=params.text(call.params, "id"),
    )
    default_price = params.mapping(call.params, "default_price_data")
    if default_price:
        recurring = default_price.get("recurring") or {}
        create_price(
            call.state,
            call.account,
            product=product,
            currency=str(default_price.get("currency") or "usd"),
            unit_amount=int(default_price.get("unit_amount") or 0),
            interval=recurring.get("interval"),
            interval_count=int(recurring.get("interval_count") or 1),
        )
    return render.respond(call.account, product, call.params)


@router.add("GET", "/v1/products/{id}")
def retrieve_product(call: Call) -> Json:
    return render.respond(call.account, call.account.get("product", call.arg("id")), call.params)


@router.add("POST", "/v1/products/{id}")
def update_product(call: Call) -> Json:
    product = call.account.get("product", call.arg("id"))
    before = render.render(call.account, product)
    for name in ("name", "description", "url", "unit_label"):
        if name in call.params:
            product[name] = params.text(call.params, name) or None
    if "active" in call.params:
        product["active"] = params.boolean(call.params, "active")
    if "marketing_features" in call.params:
        product["marketing_features"] = _features(call)
    if "default_price" in call.params:
        price = call.account.get(
            "price", params.required_text(call.params, "default_price"), "default_price"
        )
        product["default_price"] = price["id"]
    product["metadata"] = params.metadata(call.params, product["metadata"])
    product["updated"] = call.state.wall_time()
    previous = {
        key: before[key] for key in before if before[key] != product[key] and key != "updated"
    }
    events.emit(call.state, call.account, "product.updated", product, previous_attributes=previous)
    return render.respond(call.account, product, call.params)


@router.add("GET", "/v1/products")
def list_products(call: Call) -> Json:
    active = call.params.get("active")
    ids = [str(product_id) for product_id in params.sequence(call.params, "ids")]
    found = [
        product
        for product in call.account.all("product")
        if (active is None or product["active"] == params.boolean(call.params, "active"))
        and (not ids or product["id"] in ids)
    ]
    return render.paginate(call.account, found, call.params, "/v1/products")


@router.add("POST", "/v1/prices")
def create_price_route(call: Call) -> Json:
    product_id = params.text(call.params, "product")
    product_data = params.mapping(call.params, "product_data")
    if product_id:
        product = call.account.get("product", product_id, "product")
    elif product_data:
        product = create_product(call.state, call.account, name=str(product_data.get("name") or ""))
    else:
        raise errors.missing_param("product")
    recurring = params.mapping(call.params, "recurring")
    price = create_price(
        call.state,
        call.account,
        product=product,
        currency=params.required_text(call.params, "currency"),
        unit_amount=params.integer(call.params, "unit_amount", required=True) or 0,
        interval=str(recurring["interval"]) if recurring.get("interval") else None,
        interval_count=int(recurring.get("interval_count") or 1),
        lookup_key=params.text(call.params, "lookup_key"),
        nickname=params.text(call.params, "nickname"),
        metadata=params.metadata(call.params),
    )
    return render.respond(call.account, price, call.params)


@router.add("GET", "/v1/prices/{id}")
def retrieve_price(call: Call) -> Json:
    return render.respond(call.account, call.account.get("price", call.arg("id")), call.params)


@router.add("POST", "/v1/prices/{id}")
def update_price(call: Call) -> Json:
    price = call.account.get("price", call.arg("id"))
    before = render.render(call.account, price)
    if "active" in call.params:
        price["active"] = params.boolean(call.params, "active")
    if "nickname" in call.params:
        price["nickname"] = params.text(call.params, "nickname") or None
    if "lookup_key" in call.params:
        price["lookup_key"] = params.text(call.params, "lookup_key") or None
    price["metadata"] = params.metadata(call.params, price["metadata"])
    previous = {key: before[key] for key in before if before[key] != price[key]}
    events.emit(call.state, call.account, "price.updated", price, previous_attributes=previous)
    return render.respond(call.account, price, call.params)


@router.add("GET", "/v1/prices")
def list_prices(call: Call) -> Json:
    product = params.text(call.params, "product")
    currency = params.text(call.params, "currency")
    price_type = params.text(call.params, "type")
    lookup_keys = [str(key) for key in params.sequence(call.params, "lookup_keys")]
    recurring = params.mapping(call.params, "recurring")
    active = call.params.get("active")
    found = [
        price
        for price in call.account.all("price")
        if (product is None or price["product"] == product)
        and (currency is None or price["currency"] == currency.lower())
        and (price_type is None or price["type"] == price_type)
        and (not lookup_keys or price["lookup_key"] in lookup_keys)
        and (
            not recurring.get("interval")
            or (price["recurring"] or {}).get("interval") == recurring["interval"]
        )
        and (active is None or price["active"] == params.boolean(call.params, "active"))
    ]
    return render.paginate(call.account, found, call.params, "/v1/prices")
