"""Writes Stripe shows done that the ledger has no row of: after the database is restored from
a backup, every refund and plan change made since the backup is in Stripe (named by the
operation id our write put in its metadata) and nowhere in the restored ledger. The webhook
worker reads them from the events the mirror's catch-up lists again, and the ledger takes
each back as a succeeded operation, so that it is neither lost nor made a second time.

The metadata keys are written by the ledger (stripe_actions.py) with every refund and plan
change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from billing_gateway.domain import billing

Json = dict[str, Any]

OPERATION_KEY = "askvault_operation_id"
GRANT_KEY = "askvault_grant_id"
IDEMPOTENCY_KEY = "askvault_idempotency_key"

# Stripe's metadata values hold at most 500 characters.
METADATA_VALUE_MAX = 500


@dataclass(frozen=True)
class Performed:
    """A refund or plan change Stripe made for an operation of ours."""

    operation_id: str
    action: str
    grant_id: str
    # The caller's key of the original write ("" when Stripe's object does not carry it).
    idempotency_key: str
    stripe_object_id: str
    stripe_customer_id: str
    target_id: str
    parameters: Json


def metadata(operation_id: str, grant_id: str, idempotency_key: str) -> dict[str, str]:
    """What a refund or plan change carries in Stripe to be found again from Stripe alone."""
    marks = {OPERATION_KEY: operation_id, GRANT_KEY: grant_id}
    if len(idempotency_key) <= METADATA_VALUE_MAX:
        marks[IDEMPOTENCY_KEY] = idempotency_key
    return marks


def performed_in(event_type: str, obj: Json) -> Performed | None:
    """The write of ours an event's object shows done, if any: a refund (``refund.created``,
    ``refund.updated``) or a plan change (``customer.subscription.updated``)."""
    marks = obj.get("metadata") or {}
    operation_id = str(marks.get(OPERATION_KEY) or "")
    if not operation_id:
        return None
    grant_id = str(marks.get(GRANT_KEY) or "")
    key = str(marks.get(IDEMPOTENCY_KEY) or "")
    if event_type in ("refund.created", "refund.updated"):
        if obj.get("status") not in ("succeeded", "pending"):
            return None
        charge = billing.expandable_id(obj.get("charge"))
        return Performed(
            operation_id,
            "refund",
            grant_id,
            key,
            str(obj.get("id") or ""),
            "",
            charge,
            {
                "charge": charge,
                "amount": int(obj.get("amount") or 0),
                "reason": str(obj.get("reason") or ""),
            },
        )
    if event_type == "customer.subscription.updated":
        # A resubscription's new subscription carries its operation id too; it is no plan
        # change (its checkout session is what the operation made).
        if marks.get(billing.REPLACES_METADATA_KEY):
            return None
        item = billing.first_item(obj) or {}
        price = billing.expandable_id(item.get("price"))
        return Performed(
            operation_id,
            "change_plan",
            grant_id,
            key,
            str(obj.get("id") or ""),
            billing.expandable_id(obj.get("customer")),
            str(obj.get("id") or ""),
            {
                "subscription": str(obj.get("id") or ""),
                "item": str(item.get("id") or ""),
                "price": price,
                "proration_behavior": "create_prorations",
            },
        )
    return None
