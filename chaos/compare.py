"""The reconciliation's comparisons, as pure functions of what each independent source holds
(the ledgers, Stripe's own objects and events, the outbox, the SMTP sink, the WhatsApp
emulator): each returns the differences it finds, one sentence each. No I/O here, so that a
unit test plants a difference and sees it reported."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Operation:
    """One row of the billing gateway's ledger."""

    operation_id: str
    action: str
    state: str
    # The subscription or the charge it acted on.
    target_id: str
    stripe_object_id: str = ""
    # The price a plan change moved to.
    price: str = ""
    # Seconds since the epoch it was recorded (orders a subscription's changes).
    created_at: float = 0.0
    # Whether it was scheduled (a cancellation: its grace started).
    scheduled: bool = False


@dataclass(frozen=True)
class Subscription:
    """A subscription as Stripe holds it now."""

    subscription_id: str
    status: str
    price_id: str


@dataclass(frozen=True)
class Expected:
    """A message a ledger outcome should have produced: the outbox holds one whose dedup key
    starts with ``dedup_prefix``."""

    dedup_prefix: str
    why: str


@dataclass(frozen=True)
class OutboxMessage:
    """One message of the notifier's outbox."""

    message_id: str
    dedup_key: str
    channel: str
    status: str
    provider_message_id: str = ""


# Stripe statuses of a subscription that still runs (a cancellation undone leaves one).
LIVE = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete"})
# Outbox statuses of a message the provider took.
TAKEN = frozenset({"sent", "delivered", "read"})


def price_moves(snapshots: Iterable[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """(subscription, new price) for every price change in a subscription's history, given
    its snapshots oldest first (the objects of Stripe's subscription events)."""
    last: dict[str, str] = {}
    moves: Counter[tuple[str, str]] = Counter()
    for subscription_id, price in snapshots:
        before = last.get(subscription_id)
        if before is not None and price and price != before:
            moves[(subscription_id, price)] += 1
        if price:
            last[subscription_id] = price
    return moves


def plan_changes(
    operations: Sequence[Operation],
    subscriptions: Mapping[str, Subscription],
    moves: Counter[tuple[str, str]],
    first_price: Mapping[str, str],
) -> list[str]:
    """The ledger's succeeded plan changes against Stripe's own subscriptions, both ways:
    every succeeded change is a price move in Stripe's history and every price move in that
    history is a succeeded change (as many of each, per subscription and price); and each
    subscription is now on the price of its last succeeded change (else its first price)."""
    differences: list[str] = []
    changes = sorted(
        (o for o in operations if o.action == "change_plan" and o.state == "succeeded"),
        key=lambda o: o.created_at,
    )
    done = Counter((o.target_id, o.price) for o in changes if o.target_id in subscriptions)
    for (subscription_id, price), count in sorted((done - moves).items()):
        differences.append(
            f"{count} succeeded plan change(s) of {subscription_id} to {price} that Stripe "
            "never applied"
        )
    for (subscription_id, price), count in sorted((moves - done).items()):
        if subscription_id in subscriptions:
            others = [
                f"{o.operation_id} {o.state}"
                for o in operations
                if o.action == "change_plan"
                and o.target_id == subscription_id
                and o.price == price
                and o.state != "succeeded"
            ]
            differences.append(
                f"Stripe moved {subscription_id} to {price} {count} time(s) with no succeeded "
                f"plan change in the ledger (ledger: {', '.join(others) or 'nothing'})"
            )
    last = {o.target_id: o.price for o in changes}
    for subscription_id, subscription in sorted(subscriptions.items()):
        expected = last.get(subscription_id, first_price.get(subscription_id, ""))
        if expected and subscription.price_id != expected:
            differences.append(
                f"subscription {subscription_id} is on {subscription.price_id} in Stripe, "
                f"the ledger's last plan change says {expected}"
            )
    return differences


def cancellations(
    operations: Sequence[Operation],
    subscriptions: Mapping[str, Subscription],
    told: Mapping[str, str],
) -> list[str]:
    """Every cancellation either happened in Stripe (canceled) or was undone (the
    subscription live), as the ledger says; what the visitor was told last (``told``:
    subscription -> "undone" or "too late") agrees with Stripe."""
    differences: list[str] = []
    by_subscription: dict[str, list[Operation]] = {}
    for operation in operations:
        if operation.action == "cancel_subscription":
            by_subscription.setdefault(operation.target_id, []).append(operation)
    for subscription_id, subscription in sorted(subscriptions.items()):
        mine = by_subscription.get(subscription_id, [])
        succeeded = [o for o in mine if o.state == "succeeded"]
        unsettled = [o for o in mine if o.state in ("scheduled", "in_flight")]
        canceled = subscription.status == "canceled"
        for operation in unsettled:
            differences.append(
                f"cancellation {operation.operation_id} of {subscription_id} is still "
                f"{operation.state} after settling"
            )
        if succeeded and not canceled:
            differences.append(
                f"cancellation {succeeded[0].operation_id} succeeded but Stripe has "
                f"{subscription_id} {subscription.status}"
            )
        if canceled and not succeeded:
            differences.append(
                f"Stripe has {subscription_id} canceled with no succeeded cancellation in the "
                f"ledger ({', '.join(f'{o.operation_id} {o.state}' for o in mine) or 'none'})"
            )
        if not canceled and not succeeded and subscription.status not in LIVE:
            differences.append(f"subscription {subscription_id} is {subscription.status}")
        said = told.get(subscription_id)
        if said == "undone" and canceled:
            differences.append(
                f"the visitor was told the cancellation of {subscription_id} was undone, but "
                "Stripe has it canceled"
            )
        if said == "too late" and not canceled:
            differences.append(
                f"the visitor was told it was too late to undo the cancellation of "
                f"{subscription_id}, but Stripe has it {subscription.status}"
            )
    return differences


def messages(
    expected: Sequence[Expected],
    outbox: Sequence[OutboxMessage],
    at_sink: Mapping[str, int],
    at_whatsapp: Mapping[str, int],
) -> list[str]:
    """Each expected message is in the outbox once (by dedup key) and reached its provider
    once (the SMTP sink by message id, the WhatsApp emulator by its message id), unless the
    outbox has it dead (the dead letters are compared apart)."""
    differences: list[str] = []
    for wanted in expected:
        found = [m for m in outbox if m.dedup_key.startswith(wanted.dedup_prefix)]
        if not found:
            differences.append(f"no message in the outbox for {wanted.why} ({wanted.dedup_prefix})")
            continue
        if len(found) > 1:
            differences.append(
                f"{len(found)} messages in the outbox for {wanted.why}: "
                + ", ".join(f"{m.message_id} ({m.dedup_key})" for m in found)
            )
        for message in found:
            differences += _delivered(message, wanted.why, at_sink, at_whatsapp)
    return differences


def _delivered(
    message: OutboxMessage, why: str, at_sink: Mapping[str, int], at_whatsapp: Mapping[str, int]
) -> list[str]:
    if message.channel == "email":
        where, count = "the SMTP sink", at_sink.get(message.message_id, 0)
    elif message.channel == "whatsapp":
        where = "the WhatsApp emulator"
        count = (
            at_whatsapp.get(message.provider_message_id, 0) if message.provider_message_id else 0
        )
    else:
        return []
    if message.status == "dead":
        return []
    if count == 0:
        return [f"{why}: {message.message_id} is {message.status} but never reached {where}"]
    if count > 1 and message.channel != "email":
        return [f"{why}: {message.message_id} reached {where} {count} times"]
    # An email the sink took more than once under one Message-ID is SMTP's at-least-once
    # across a crash between the sink's accept and the outbox's record: the receiver keeps one
    # by its Message-ID (the figure "SMTP duplicates" counts them). Two outbox messages for
    # one outcome, which a person would see twice, are a difference above.
    if message.status not in TAKEN:
        return [f"{why}: {message.message_id} reached {where} but is {message.status}"]
    return []


def dead_letters(
    outbox: Sequence[OutboxMessage], refused: Mapping[str, int], at_sink: Mapping[str, int]
) -> list[str]:
    """No message went dead without the notifier holding it as a dead letter: every email the
    sink refused for good (a 5xx; ``refused``: message id -> code) and never took later is
    dead in the outbox, and every dead email was refused by the sink."""
    differences: list[str] = []
    by_id = {m.message_id: m for m in outbox}
    for message_id, code in sorted(refused.items()):
        message = by_id.get(message_id)
        if code < 500 or at_sink.get(message_id, 0):
            continue
        if message is None:
            differences.append(f"the sink refused {message_id} ({code}), which is in no outbox")
        elif message.status != "dead":
            differences.append(
                f"the sink refused {message_id} for good ({code}) and never took it, but the "
                f"outbox has it {message.status}, not dead"
            )
    for message in outbox:
        if (
            message.channel == "email"
            and message.status == "dead"
            and message.message_id not in refused
        ):
            differences.append(f"{message.message_id} is dead but the sink never refused it")
    return differences


def whatsapp_statuses(outbox: Sequence[OutboxMessage], reported: Mapping[str, str]) -> list[str]:
    """Every status the WhatsApp emulator reported and the edge took (``reported``: provider
    message id -> the furthest status) shows in the outbox: a message reported delivered is
    delivered (or read), one reported failed is failed or dead or fell back."""
    differences: list[str] = []
    by_provider = {m.provider_message_id: m for m in outbox if m.provider_message_id}
    for provider_id, status in sorted(reported.items()):
        message = by_provider.get(provider_id)
        if message is None:
            differences.append(f"WhatsApp reported {status} for {provider_id}, in no outbox")
        elif status in ("delivered", "read") and message.status not in ("delivered", "read"):
            differences.append(
                f"WhatsApp reported {provider_id} {status}, the outbox has "
                f"{message.message_id} {message.status}"
            )
    return differences


# What the mirror must agree with Stripe on, per object type (what reads show): the Stripe
# list it is compared with, the fields, the list's parameters.
MIRROR_FIELDS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "subscription": (
        "subscriptions",
        ("status", "cancel_at_period_end", "pause_collection", "price"),
        {"status": "all"},
    ),
    "invoice": ("invoices", ("status", "amount_due", "amount_paid", "hosted_invoice_url"), {}),
    "charge": ("charges", ("status", "amount_refunded", "refunded"), {}),
    "refund": ("refunds", ("status", "amount"), {}),
    "customer": ("customers", ("email",), {}),
    "price": ("prices", ("active", "unit_amount"), {}),
    "product": ("products", ("active", "name"), {}),
}


def mirror_value(obj: Mapping[str, Any], name: str) -> Any:
    """A field as reads show it (a subscription's price is its first item's)."""
    if name == "price":
        items = (obj.get("items") or {}).get("data") or [{}]
        return ((items[0] or {}).get("price") or {}).get("id")
    if name == "pause_collection":
        return bool(obj.get("pause_collection"))
    return obj.get(name)


def mirror(
    held: Mapping[tuple[str, str], Mapping[str, Any]],
    listed: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[list[str], int]:
    """The gateway's mirror (``held``: (type, id) -> object with "deleted") against Stripe's
    lists (``listed``: type -> objects): every listed object mirrored alike, nothing mirrored
    that Stripe no longer lists. The differences and how many objects were compared."""
    differences: list[str] = []
    compared = 0
    for object_type, (_, fields, _) in MIRROR_FIELDS.items():
        objects = listed.get(object_type, [])
        at_stripe = {str(obj["id"]) for obj in objects}
        for obj in objects:
            mine = held.get((object_type, str(obj["id"])))
            compared += 1
            if mine is None or mine.get("deleted"):
                differences.append(f"mirror lacks {object_type} {obj['id']}")
                continue
            for name in fields:
                if mirror_value(mine, name) != mirror_value(obj, name):
                    differences.append(
                        f"mirror {object_type} {obj['id']} {name}: "
                        f"{mirror_value(mine, name)!r}, Stripe {mirror_value(obj, name)!r}"
                    )
        for (kind, object_id), mine in held.items():
            if kind == object_type and not mine.get("deleted") and object_id not in at_stripe:
                differences.append(f"mirror holds {object_type} {object_id}, Stripe lists none")
    return differences, compared
