"""Subscriptions over time: creation, plan changes with proration, renewals, retries,
cancellation, pauses, and advancing time (test clocks, or the wall clock for the rest)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stripe_emulator import errors, events, invoicing, objects, payments, proration, render
from stripe_emulator.invoicing import LineSpec
from stripe_emulator.state import Account, State

Json = dict[str, Any]

# An `incomplete` subscription whose first invoice stays unpaid expires after 23 hours.
INCOMPLETE_EXPIRY_SECONDS = 23 * 60 * 60
# Safety bound for one catch-up: more due steps than this means a bug, not a busy account.
MAX_STEPS_PER_ADVANCE = 10_000
LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid")
UPI_OPTIONS_TEMPLATE: Json = {
    "acss_debit": None,
    "bancontact": None,
    "card": None,
    "customer_balance": None,
    "konbini": None,
    "sepa_debit": None,
    "us_bank_account": None,
    "payto": None,
    "pix": None,
    "upi": {},
}


def clock_of(account: Account, customer: Json) -> Json | None:
    clock_id = customer.get("test_clock")
    return account.find("test_helpers.test_clock", str(clock_id)) if clock_id else None


def now_for(state: State, account: Account, customer: Json) -> int:
    """A customer's present: its test clock's frozen time, else the wall clock."""
    clock = clock_of(account, customer)
    return int(clock["frozen_time"]) if clock else state.wall_time()


def period_of(subscription: Json) -> tuple[int, int]:
    first = subscription["items"]["data"][0]
    return int(first["current_period_start"]), int(first["current_period_end"])


def interval_of(price: Json) -> tuple[str, int]:
    recurring = price.get("recurring")
    if not recurring:
        raise errors.invalid_param(
            "items", f"The price specified ({price['id']}) is not a recurring price."
        )
    return str(recurring["interval"]), int(recurring["interval_count"])


def _set_period(subscription: Json, start: int, end: int) -> None:
    for item in subscription["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = end


@dataclass
class ItemRequest:
    """One entry of `items[]` in a create or update call."""

    item_id: str | None
    price: Json | None
    quantity: int | None
    deleted: bool
    metadata: dict[str, str] | None


# creation


def create(
    state: State,
    account: Account,
    customer: Json,
    *,
    items: list[ItemRequest],
    default_payment_method: Json | None,
    trial_end: int | None,
    payment_behavior: str,
    collection_method: str,
    days_until_due: int | None,
    metadata: dict[str, str],
    description: str | None,
    cancel_at_period_end: bool,
    now: int,
) -> Json:
    prices = [item.price for item in items if item.price is not None]
    if not prices:
        raise errors.missing_param("items")
    currency = str(prices[0]["currency"])
    interval = interval_of(prices[0])
    for price in prices:
        if interval_of(price) != interval:
            raise errors.invalid_param(
                "items",
                "Currency and interval fields must match across all plans on a subscription.",
            )
        if price["currency"] != currency:
            raise errors.invalid_param(
                "items",
                "Currency and interval fields must match across all plans on a subscription.",
            )
    payment_method = default_payment_method or _customer_default_method(account, customer)
    if (
        payment_behavior == "error_if_incomplete"
        and trial_end is None
        and collection_method == "charge_automatically"
    ):
        if payment_method is None:
            raise errors.invalid_request(
                "This customer has no attached payment source or default payment method.",
                code="resource_missing",
            )
        decline = payments.decline_of(payment_method)
        if decline is not None:
            raise errors.card_declined(decline[1], decline[0], charge_id=None)
    trialing = trial_end is not None and trial_end > now
    anchor = trial_end if trialing and trial_end is not None else now
    period_end = anchor if trialing else proration.add_interval(now, interval[0], interval[1])
    subscription_id = state.new_id("sub")
    item_objects = [
        objects.subscription_item(
            state.new_id("si", 14),
            now,
            subscription_id=subscription_id,
            price_id=str(item.price["id"]),
            quantity=item.quantity or 1,
            period_start=now,
            period_end=period_end,
            metadata=item.metadata or {},
        )
        for item in items
        if item.price is not None
    ]
    options = None
    method_types = None
    if default_payment_method is not None and default_payment_method["type"] == "upi":
        options = copy.deepcopy(UPI_OPTIONS_TEMPLATE)
        method_types = ["upi"]
    subscription = objects.subscription(
        subscription_id,
        now,
        customer_id=str(customer["id"]),
        currency=currency,
        items=item_objects,
        billing_cycle_anchor=anchor,
        collection_method=collection_method,
        days_until_due=days_until_due,
        default_payment_method=default_payment_method["id"] if default_payment_method else None,
        description=description,
        metadata=metadata,
        status="trialing" if trialing else "incomplete",
        trial_start=now if trialing else None,
        trial_end=trial_end if trialing else None,
        test_clock=customer.get("test_clock"),
        payment_method_options=options,
        payment_method_types=method_types,
    )
    if cancel_at_period_end:
        subscription["cancel_at_period_end"] = True
        subscription["cancel_at"] = period_end
        subscription["canceled_at"] = now
    account.put(subscription)
    if default_payment_method is not None and default_payment_method["type"] == "upi":
        _ensure_upi_mandate(state, account, default_payment_method, prices[0], now)
    lines = [
        _trial_line(account, price_of(account, item), item, now, period_end)
        if trialing
        else invoicing.cycle_line(
            account, price_of(account, item), int(item["quantity"]), now, period_end, item["id"]
        )
        for item in item_objects
    ]
    invoice = invoicing.create_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason="subscription_create",
        lines=lines,
        period_start=now,
        period_end=now,
        now=now,
    )
    subscription["latest_invoice"] = invoice["id"]
    invoicing.finalize(state, account, invoice, now)
    if invoice["status"] == "paid" or trialing:
        subscription["status"] = "trialing" if trialing else "active"
    elif collection_method == "send_invoice":
        subscription["status"] = "active"
    elif payment_behavior != "default_incomplete":
        result = invoicing.attempt_payment(
            state, account, invoice, now, payment_method=payment_method
        )
        subscription["status"] = "active" if result.paid else "incomplete"
        # The first invoice of an incomplete subscription is not retried automatically.
        invoice["next_payment_attempt"] = None
    events.emit(state, account, "customer.subscription.created", subscription, created=now)
    return subscription


def price_of(account: Account, item: Json) -> Json:
    price = item["price"]
    return account.get("price", price if isinstance(price, str) else str(price["id"]))


def _trial_line(account: Account, price: Json, item: Json, start: int, end: int) -> LineSpec:
    return LineSpec(
        amount=0,
        description=f"Trial period for {invoicing.product_name(account, price)}",
        period_start=start,
        period_end=end,
        quantity=int(item["quantity"]),
        price=price,
        proration=False,
        subscription_item_id=str(item["id"]),
    )


def _customer_default_method(account: Account, customer: Json) -> Json | None:
    default = customer["invoice_settings"]["default_payment_method"]
    return account.find("payment_method", str(default)) if default else None


def _ensure_upi_mandate(
    state: State, account: Account, payment_method: Json, price: Json, now: int
) -> Json:
    """UPI recurring payments run on an India eMandate with a maximum amount per debit."""
    for mandate in account.all("mandate"):
        if mandate["payment_method"] == payment_method["id"]:
            return mandate
    return account.put(
        objects.upi_mandate(
            state.new_id("mandate"),
            payment_method_id=str(payment_method["id"]),
            accepted_at=now,
            amount=max(int(price["unit_amount"]) * 2, 1500000),
            currency=str(price["currency"]),
            description="AskVault subscription",
            end_date=None,
        )
    )


def ensure_mandate_for(
    state: State, account: Account, payment_method: Json, price: Json, now: int
) -> Json:
    return _ensure_upi_mandate(state, account, payment_method, price, now)


# plan changes


@dataclass
class ChangePlan:
    """What an update does to the items, computed once for both the update and its preview."""

    resulting: list[tuple[str | None, Json, int, dict[str, str] | None]]
    proration_lines: list[LineSpec]
    resets_cycle: bool
    changed: bool


def plan_change(
    account: Account,
    subscription: Json,
    requests: list[ItemRequest],
    *,
    at: int,
    behavior: str,
) -> ChangePlan:
    current = {str(item["id"]): item for item in subscription["items"]["data"]}
    resulting: dict[str, tuple[str | None, Json, int, dict[str, str] | None]] = {
        item_id: (item_id, price_of(account, item), int(item["quantity"]), None)
        for item_id, item in current.items()
    }
    added: list[tuple[str | None, Json, int, dict[str, str] | None]] = []
    for request in requests:
        if request.item_id is not None:
            if request.item_id not in current:
                raise errors.invalid_param(
                    "items", f"Invalid subscription_item id: {request.item_id}"
                )
            if request.deleted:
                resulting.pop(request.item_id, None)
                continue
            _, old_price, old_quantity, _ = resulting[request.item_id]
            resulting[request.item_id] = (
                request.item_id,
                request.price or old_price,
                request.quantity if request.quantity is not None else old_quantity,
                request.metadata,
            )
        else:
            if request.price is None:
                raise errors.missing_param("items[0][price]")
            added.append((None, request.price, request.quantity or 1, request.metadata))
    final = [*resulting.values(), *added]
    if not final:
        raise errors.invalid_param("items", "A subscription must have at least one active item.")
    old_interval = interval_of(price_of(account, subscription["items"]["data"][0]))
    new_interval = interval_of(final[0][1])
    for _, price, _, _ in final:
        if interval_of(price) != new_interval or price["currency"] != subscription["currency"]:
            raise errors.invalid_param(
                "items",
                "Currency and interval fields must match across all plans on a subscription.",
            )
    resets_cycle = new_interval != old_interval
    start, end = period_of(subscription)
    prorate = behavior != "none" and subscription["status"] != "trialing"
    lines: list[LineSpec] = []
    changed = False
    final_by_id = {entry[0]: entry for entry in final if entry[0] is not None}
    for item_id, item in current.items():
        old_price = price_of(account, item)
        old_quantity = int(item["quantity"])
        after = final_by_id.get(item_id)
        if after is not None and after[1]["id"] == old_price["id"] and after[2] == old_quantity:
            continue
        changed = True
        if prorate:
            lines.append(_credit_line(account, old_price, old_quantity, start, end, at, item_id))
        if after is not None and prorate and not resets_cycle:
            lines.append(_debit_line(account, after[1], after[2], start, end, at, item_id))
    for _, price, quantity, _ in added:
        changed = True
        if prorate and not resets_cycle:
            lines.append(_debit_line(account, price, quantity, start, end, at, None))
    return ChangePlan(final, lines, resets_cycle, changed)


def _who(account: Account, price: Json, quantity: int) -> str:
    name = invoicing.product_name(account, price)
    return name if quantity == 1 else f"{quantity} × {name}"  # noqa: RUF001 (Stripe's sign)


def _credit_line(
    account: Account, price: Json, quantity: int, start: int, end: int, at: int, item_id: str | None
) -> LineSpec:
    amount = proration.prorated_amount(int(price["unit_amount"]), quantity, start, end, at)
    return LineSpec(
        amount=-amount,
        description=(
            f"Unused time on {_who(account, price, quantity)} after {proration.format_day(at)}"
        ),
        period_start=at,
        period_end=end,
        quantity=quantity,
        price=price,
        proration=True,
        subscription_item_id=item_id,
    )


def _debit_line(
    account: Account, price: Json, quantity: int, start: int, end: int, at: int, item_id: str | None
) -> LineSpec:
    amount = proration.prorated_amount(int(price["unit_amount"]), quantity, start, end, at)
    return LineSpec(
        amount=amount,
        description=(
            f"Remaining time on {_who(account, price, quantity)} after {proration.format_day(at)}"
        ),
        period_start=at,
        period_end=end,
        quantity=quantity,
        price=price,
        proration=True,
        subscription_item_id=item_id,
    )


def apply_plan_change(
    state: State,
    account: Account,
    subscription: Json,
    change: ChangePlan,
    *,
    at: int,
    behavior: str,
    payment_behavior: str,
) -> None:
    customer = account.get("customer", str(subscription["customer"]))
    start, end = period_of(subscription)
    if change.resets_cycle:
        interval = interval_of(change.resulting[0][1])
        start, end = at, proration.add_interval(at, interval[0], interval[1])
        subscription["billing_cycle_anchor"] = at
    kept: list[Json] = []
    existing = {str(item["id"]): item for item in subscription["items"]["data"]}
    for item_id, price, quantity, metadata in change.resulting:
        item = existing.get(item_id) if item_id else None
        if item is None:
            item = objects.subscription_item(
                state.new_id("si", 14),
                at,
                subscription_id=str(subscription["id"]),
                price_id=str(price["id"]),
                quantity=quantity,
                period_start=start,
                period_end=end,
                metadata=metadata or {},
            )
        item["price"] = str(price["id"])
        item["plan"] = None
        item["quantity"] = quantity
        if metadata is not None:
            item["metadata"] = metadata
        kept.append(item)
    subscription["items"]["data"] = kept
    _set_period(subscription, start, end)
    if change.resets_cycle:
        lines = [
            *change.proration_lines,
            *(
                invoicing.cycle_line(
                    account,
                    price_of(account, item),
                    int(item["quantity"]),
                    start,
                    end,
                    str(item["id"]),
                )
                for item in kept
            ),
        ]
        _invoice_now(state, account, customer, subscription, lines, at, include_pending=True)
        return
    if not change.proration_lines:
        return
    for line in change.proration_lines:
        _pending_item(state, account, customer, subscription, line, at)
    if behavior == "always_invoice":
        _invoice_now(state, account, customer, subscription, [], at, include_pending=True)


def _pending_item(
    state: State, account: Account, customer: Json, subscription: Json, line: LineSpec, at: int
) -> Json:
    item = account.put(
        objects.invoice_item(
            state.new_id("ii"),
            at,
            customer_id=str(customer["id"]),
            amount=line.amount,
            currency=str(subscription["currency"]),
            description=line.description,
            period_start=line.period_start,
            period_end=line.period_end,
            proration=line.proration,
            quantity=line.quantity,
            subscription_id=str(subscription["id"]),
            subscription_item_id=line.subscription_item_id,
            price_id=str(line.price["id"]),
            product_id=str(line.price["product"]),
            unit_amount=int(line.price["unit_amount"]),
            test_clock=customer.get("test_clock"),
        )
    )
    events.emit(state, account, "invoiceitem.created", item, created=at)
    return item


def _invoice_now(
    state: State,
    account: Account,
    customer: Json,
    subscription: Json,
    lines: list[LineSpec],
    at: int,
    *,
    include_pending: bool,
) -> Json:
    invoice = invoicing.create_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason="subscription_update",
        lines=lines,
        period_start=at,
        period_end=at,
        now=at,
        include_pending_items=include_pending,
    )
    subscription["latest_invoice"] = invoice["id"]
    invoicing.finalize(state, account, invoice, at)
    if invoice["status"] == "open" and subscription["collection_method"] == "charge_automatically":
        result = invoicing.attempt_payment(state, account, invoice, at)
        settle_status(state, account, subscription, result.paid, at, emit=False)
    return invoice


def preview(
    state: State,
    account: Account,
    subscription: Json,
    change: ChangePlan | None,
    *,
    at: int,
    behavior: str,
) -> Json:
    """The invoice an update would produce: now (always_invoice, new interval) or at renewal."""
    customer = account.get("customer", str(subscription["customer"]))
    start, end = period_of(subscription)
    pending = [
        invoicing.item_line(account, item)
        for item in invoicing.pending_items(account, str(customer["id"]), str(subscription["id"]))
    ]
    resulting = (
        change.resulting
        if change is not None
        else [
            (str(item["id"]), price_of(account, item), int(item["quantity"]), None)
            for item in subscription["items"]["data"]
        ]
    )
    proration_lines = change.proration_lines if change is not None else []
    if change is not None and change.resets_cycle:
        interval = interval_of(resulting[0][1])
        new_end = proration.add_interval(at, interval[0], interval[1])
        lines = [
            *pending,
            *proration_lines,
            *(
                invoicing.cycle_line(account, price, quantity, at, new_end, item_id)
                for item_id, price, quantity, _ in resulting
            ),
        ]
        reason, period = "subscription_update", (at, at)
    elif behavior == "always_invoice" and proration_lines:
        lines = [*pending, *proration_lines]
        reason, period = "subscription_update", (at, at)
    else:
        interval = interval_of(resulting[0][1])
        next_end = proration.period_end_after(
            int(subscription["billing_cycle_anchor"]), end, interval[0], interval[1]
        )
        cycle = (
            []
            if subscription["cancel_at_period_end"]
            else [
                invoicing.cycle_line(account, price, quantity, end, next_end, item_id)
                for item_id, price, quantity, _ in resulting
            ]
        )
        lines = [*pending, *proration_lines, *cycle]
        reason, period = "subscription_cycle", (start, end)
    invoice = invoicing.build_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason=reason,
        lines=lines,
        period_start=period[0],
        period_end=period[1],
        now=at,
        invoice_id=state.new_id("upcoming_in"),
    )
    invoice["created"] = at
    return invoice


# status changes


def settle_status(
    state: State, account: Account, subscription: Json, paid: bool, now: int, *, emit: bool = True
) -> None:
    """After a payment attempt: paid clears past_due/unpaid/incomplete, a failure sets past_due."""
    before = render.render(account, subscription)
    status = subscription["status"]
    if paid:
        still_open = [
            invoice
            for invoice in account.all("invoice")
            if invoice["subscription"] == subscription["id"] and invoice["status"] == "open"
        ]
        if status in ("past_due", "unpaid", "incomplete") and not still_open:
            subscription["status"] = "active"
    elif status in ("active", "trialing"):
        subscription["status"] = "past_due"
    if emit and subscription["status"] != status:
        events.emit(
            state,
            account,
            "customer.subscription.updated",
            subscription,
            previous_attributes={"status": before["status"]},
            created=now,
        )


def end(state: State, account: Account, subscription: Json, at: int, *, reason: str) -> None:
    subscription["status"] = "canceled"
    subscription["ended_at"] = at
    subscription["canceled_at"] = subscription["canceled_at"] or at
    subscription["cancellation_details"]["reason"] = reason
    for invoice in account.all("invoice"):
        if invoice["subscription"] == subscription["id"] and invoice["status"] == "open":
            invoice["next_payment_attempt"] = None
    events.emit(state, account, "customer.subscription.deleted", subscription, created=at)


def renew(state: State, account: Account, subscription: Json, at: int) -> None:
    """The period ended at `at`: start the next one and invoice it (or end the subscription)."""
    before = render.render(account, subscription)
    if subscription["cancel_at"] is not None and int(subscription["cancel_at"]) <= at:
        end(
            state,
            account,
            subscription,
            int(subscription["cancel_at"]),
            reason="cancellation_requested",
        )
        return
    customer = account.get("customer", str(subscription["customer"]))
    old_start, _ = period_of(subscription)
    price = price_of(account, subscription["items"]["data"][0])
    interval = interval_of(price)
    next_end = proration.period_end_after(
        int(subscription["billing_cycle_anchor"]), at, interval[0], interval[1]
    )
    _set_period(subscription, at, next_end)
    if subscription["status"] == "trialing":
        subscription["status"] = "active"
    lines = [
        invoicing.cycle_line(
            account, price_of(account, item), int(item["quantity"]), at, next_end, str(item["id"])
        )
        for item in subscription["items"]["data"]
    ]
    invoice = invoicing.create_invoice(
        state,
        account,
        customer,
        subscription=subscription,
        billing_reason="subscription_cycle",
        lines=lines,
        period_start=old_start,
        period_end=at,
        now=at,
    )
    subscription["latest_invoice"] = invoice["id"]
    pause = subscription["pause_collection"]
    if pause is not None and pause["behavior"] == "keep_as_draft":
        pass
    else:
        invoicing.finalize(state, account, invoice, at)
        if pause is not None and invoice["status"] == "open":
            if pause["behavior"] == "void":
                invoicing.void(state, account, invoice, at)
            else:
                invoicing.mark_uncollectible(state, account, invoice, at)
        elif (
            invoice["status"] == "open"
            and subscription["collection_method"] == "charge_automatically"
        ):
            result = invoicing.attempt_payment(state, account, invoice, at)
            if not result.paid and subscription["status"] == "active":
                subscription["status"] = "past_due"
    previous = {
        key: before[key] for key in ("status", "latest_invoice") if before[key] != subscription[key]
    }
    previous["items"] = before["items"]
    events.emit(
        state,
        account,
        "customer.subscription.updated",
        subscription,
        previous_attributes=previous,
        created=at,
    )


def retry(state: State, account: Account, invoice: Json, at: int) -> None:
    result = invoicing.attempt_payment(state, account, invoice, at)
    subscription = account.find("subscription", str(invoice["subscription"]))
    if subscription is None:
        return
    if result.paid:
        settle_status(state, account, subscription, True, at)
    elif invoice["next_payment_attempt"] is None and subscription["status"] in (
        "past_due",
        "active",
    ):
        before_status = subscription["status"]
        subscription["status"] = "unpaid"
        events.emit(
            state,
            account,
            "customer.subscription.updated",
            subscription,
            previous_attributes={"status": before_status},
            created=at,
        )


def _next_due(account: Account, subscription: Json) -> int | None:
    status = subscription["status"]
    if status == "incomplete":
        return int(subscription["created"]) + INCOMPLETE_EXPIRY_SECONDS
    if status not in LIVE_STATUSES:
        return None
    candidates = [period_of(subscription)[1]]
    if subscription["cancel_at"] is not None:
        candidates.append(int(subscription["cancel_at"]))
    pause = subscription["pause_collection"]
    if pause is not None and pause.get("resumes_at"):
        candidates.append(int(pause["resumes_at"]))
    return min(candidates)


def _step(state: State, account: Account, subscription: Json, at: int) -> None:
    status = subscription["status"]
    if status == "incomplete":
        subscription["status"] = "incomplete_expired"
        subscription["ended_at"] = at
        for invoice in account.all("invoice"):
            if invoice["subscription"] == subscription["id"] and invoice["status"] == "open":
                invoicing.void(state, account, invoice, at)
        events.emit(
            state,
            account,
            "customer.subscription.updated",
            subscription,
            previous_attributes={"status": "incomplete"},
            created=at,
        )
        return
    pause = subscription["pause_collection"]
    if pause is not None and pause.get("resumes_at") and int(pause["resumes_at"]) <= at:
        subscription["pause_collection"] = None
        events.emit(
            state,
            account,
            "customer.subscription.updated",
            subscription,
            previous_attributes={"pause_collection": pause},
            created=at,
        )
        return
    if subscription["cancel_at"] is not None and int(subscription["cancel_at"]) <= at:
        end(
            state,
            account,
            subscription,
            int(subscription["cancel_at"]),
            reason="cancellation_requested",
        )
        return
    renew(state, account, subscription, at)


def catch_up(state: State, account: Account, now: int) -> None:
    """Runs what is due on the wall clock, unless nothing can be: no request that may change
    objects since the last catch-up, and its next due moment still ahead."""
    if account.id in state.caught_up:
        due = state.caught_up[account.id]
        if due is None or now < due:
            return
    state.caught_up[account.id] = advance(state, account, now, clock_id=None)


def advance(state: State, account: Account, until: int, *, clock_id: str | None) -> int | None:
    """Run everything due up to `until` for the subscriptions on `clock_id` (None: wall clock);
    the next moment something is due after `until` (None: nothing is)."""
    for _ in range(MAX_STEPS_PER_ADVANCE):
        due_at: int | None = None
        upcoming: int | None = None
        action: tuple[str, Json] | None = None
        for subscription in account.all("subscription"):
            if subscription["test_clock"] != clock_id:
                continue
            moment = _next_due(account, subscription)
            if moment is None:
                continue
            if moment > until:
                upcoming = moment if upcoming is None else min(upcoming, moment)
            elif due_at is None or moment < due_at:
                due_at, action = moment, ("subscription", subscription)
        for invoice in account.all("invoice"):
            if invoice["test_clock"] != clock_id or invoice["status"] != "open":
                continue
            if invoice["next_payment_attempt"] is None:
                continue
            moment = int(invoice["next_payment_attempt"])
            if moment > until:
                upcoming = moment if upcoming is None else min(upcoming, moment)
            elif due_at is None or moment < due_at:
                due_at, action = moment, ("invoice", invoice)
        if action is None or due_at is None:
            return upcoming
        kind, target = action
        if kind == "subscription":
            _step(state, account, target, due_at)
        else:
            retry(state, account, target, due_at)
    raise RuntimeError("subscription catch-up did not converge")


def credit_unused_time(state: State, account: Account, subscription: Json, at: int) -> None:
    """Cancellation with `prorate`: a pending credit for the unused part of the period."""
    customer = account.get("customer", str(subscription["customer"]))
    start, end_of_period = period_of(subscription)
    for item in subscription["items"]["data"]:
        line = _credit_line(
            account,
            price_of(account, item),
            int(item["quantity"]),
            start,
            end_of_period,
            at,
            str(item["id"]),
        )
        _pending_item(state, account, customer, subscription, line, at)


def invoice_pending_now(
    state: State, account: Account, customer: Json, subscription: Json, at: int
) -> Json | None:
    """Cancellation with `invoice_now`: a final invoice of whatever is pending."""
    if not invoicing.pending_items(account, str(customer["id"]), str(subscription["id"])):
        return None
    return _invoice_now(state, account, customer, subscription, [], at, include_pending=True)
