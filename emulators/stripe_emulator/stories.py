"""Demo stories put back as the seed left them, so that ``make demo`` can be played again.

Only what a journey changes is put back, and every change is announced by the events Stripe
would send (the billing gateway's mirror follows them): the subscription back on its seed
price with no cancellation or pause pending, the proration items a plan change left for the
next invoice deleted, and a fresh copy of the duplicate charge once the last one was
refunded (backdated to the seed's duplicate, so the story reads the same). A refund itself
is never undone: Stripe cannot do that either.
"""

from __future__ import annotations

from typing import Any

from stripe_emulator import errors, events, lifecycle, payments, render
from stripe_emulator.lifecycle import ItemRequest
from stripe_emulator.state import Account, State

Json = dict[str, Any]

# The customers whose story can be reset: email -> the tier and currency of its seed plan.
RESETTABLE = {"bob@example.com": ("starter", "usd")}


def reset(state: State, account: Account, email: str) -> Json:
    """Puts the demo customer of ``email`` back in its seed story; a summary of what
    changed (empty lists when nothing needed to)."""
    if email not in RESETTABLE:
        raise errors.invalid_request(f"No resettable demo story for {email!r}.")
    tier, currency = RESETTABLE[email]
    customer = next((c for c in account.all("customer") if c["email"] == email), None)
    if customer is None:
        raise errors.invalid_request(f"No demo customer {email!r}: seed the emulator first.")
    now = lifecycle.now_for(state, account, customer)
    price = next(
        p
        for p in account.all("price")
        if p["active"] and p["metadata"].get("tier") == tier and p["currency"] == currency
    )
    changed: Json = {"charges": [], "invoice_items_deleted": [], "subscription": None}
    changed["charges"] = _duplicate_again(state, account, customer, int(price["unit_amount"]))
    subscription = _latest_subscription(account, str(customer["id"]))
    if subscription is None or subscription["status"] in ("canceled", "incomplete_expired"):
        raise errors.invalid_request(f"{email}'s subscription has ended; reset the emulator.")
    changed["invoice_items_deleted"] = _delete_pending_items(state, account, customer, now)
    if _restore_subscription(state, account, subscription, price, now):
        changed["subscription"] = subscription["id"]
    return changed


def _latest_subscription(account: Account, customer_id: str) -> Json | None:
    found = [s for s in account.all("subscription") if s["customer"] == customer_id]
    return max(found, key=lambda s: int(s["created"])) if found else None


def _duplicate_again(state: State, account: Account, customer: Json, amount: int) -> list[str]:
    """A new duplicate of the seed's first charge when every later one of that amount was
    refunded; the ids of the charges made."""
    charges = sorted(
        (
            c
            for c in account.all("charge")
            if c["customer"] == customer["id"] and c["amount"] == amount and c["paid"]
        ),
        key=lambda c: (int(c["created"]), str(c["id"])),
    )
    if len(charges) < 2 or any(
        not c["refunded"] and c["amount_refunded"] == 0 for c in charges[1:]
    ):
        return []
    duplicate = charges[1]
    method = account.get(
        "payment_method", str(customer["invoice_settings"]["default_payment_method"])
    )
    outcome = payments.collect(
        state,
        account,
        customer_id=str(customer["id"]),
        payment_method=method,
        amount=amount,
        currency=str(duplicate["currency"]),
        description=duplicate["description"],
        now=int(duplicate["created"]),
    )
    return [str(outcome.charge["id"])] if outcome.charge is not None else []


def _delete_pending_items(state: State, account: Account, customer: Json, now: int) -> list[str]:
    pending = [
        item
        for item in account.all("invoiceitem")
        if item["customer"] == customer["id"] and item["invoice"] is None
    ]
    for item in pending:
        account.table("invoiceitem").pop(str(item["id"]))
        events.emit(state, account, "invoiceitem.deleted", {**item, "deleted": True}, created=now)
    return [str(item["id"]) for item in pending]


def _restore_subscription(
    state: State, account: Account, subscription: Json, price: Json, now: int
) -> bool:
    """The seed price, nothing pending; True when anything changed (and was announced)."""
    before = render.render(account, subscription)
    item = subscription["items"]["data"][0]
    if item["price"] != price["id"]:
        request = ItemRequest(
            item_id=str(item["id"]), price=price, quantity=1, deleted=False, metadata=None
        )
        change = lifecycle.plan_change(account, subscription, [request], at=now, behavior="none")
        lifecycle.apply_plan_change(
            state,
            account,
            subscription,
            change,
            at=now,
            behavior="none",
            payment_behavior="allow_incomplete",
        )
    subscription["cancel_at_period_end"] = False
    subscription["cancel_at"] = None
    subscription["canceled_at"] = None
    subscription["pause_collection"] = None
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
    return bool(previous)
