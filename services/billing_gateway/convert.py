"""Stripe objects (plain dicts) and ledger rows as protobuf messages. Only ids, brand and
last 4 of a card ever leave Stripe's objects: never a card number."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from billing_gateway import operation_store
from billing_gateway.domain import billing

Json = Mapping[str, Any]

ACTIONS = {
    "refund": common_pb2.BILLING_ACTION_REFUND,
    "change_plan": common_pb2.BILLING_ACTION_CHANGE_PLAN,
    "cancel_subscription": common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION,
    "pause_subscription": common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION,
    "resume_subscription": common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION,
    "retry_payment": common_pb2.BILLING_ACTION_RETRY_PAYMENT,
    # A plan change by subscribing anew (UPI, an Indian eMandate): its own action in policy.
    "resubscribe": common_pb2.BILLING_ACTION_START_RESUBSCRIPTION,
}
_STATES = {
    operation_store.SCHEDULED: pb.OPERATION_STATE_SCHEDULED,
    operation_store.IN_FLIGHT: pb.OPERATION_STATE_IN_FLIGHT,
    operation_store.SUCCEEDED: pb.OPERATION_STATE_SUCCEEDED,
    operation_store.FAILED: pb.OPERATION_STATE_FAILED,
    operation_store.VOIDED: pb.OPERATION_STATE_VOIDED,
}
_SUBSCRIPTION_STATUS = {
    "active": pb.SUBSCRIPTION_STATUS_ACTIVE,
    "trialing": pb.SUBSCRIPTION_STATUS_TRIALING,
    "past_due": pb.SUBSCRIPTION_STATUS_PAST_DUE,
    "canceled": pb.SUBSCRIPTION_STATUS_CANCELED,
    "unpaid": pb.SUBSCRIPTION_STATUS_UNPAID,
    "incomplete": pb.SUBSCRIPTION_STATUS_INCOMPLETE,
    "incomplete_expired": pb.SUBSCRIPTION_STATUS_INCOMPLETE_EXPIRED,
    "paused": pb.SUBSCRIPTION_STATUS_PAUSED,
}
RECOVERY_STATES = {
    "open": pb.RECOVERY_STATE_OPEN,
    "recovered": pb.RECOVERY_STATE_RECOVERED,
    "lost": pb.RECOVERY_STATE_LOST,
}


def timestamp(value: datetime | int | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp from a datetime or Stripe's unix seconds; None stays unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    if isinstance(value, int):
        stamp.FromSeconds(value)
    else:
        stamp.FromDatetime(value)
    return stamp


def from_unix(seconds: int) -> datetime:
    """Stripe's unix seconds as an aware datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def money(amount: Any, currency: Any) -> common_pb2.Money:
    """Integer minor units and a lower-case currency."""
    return common_pb2.Money(amount_minor=int(amount or 0), currency=str(currency or "").lower())


def operation(record: operation_store.OperationRecord) -> pb.Operation:
    """A ledger row as the contract shows it."""
    return pb.Operation(
        operation_id=record.operation_id,
        workspace_id=record.workspace_id,
        action=ACTIONS.get(record.action, common_pb2.BILLING_ACTION_UNSPECIFIED),
        state=_STATES.get(record.state, pb.OPERATION_STATE_UNSPECIFIED),
        grant_id=record.grant_id,
        stripe_object_id=record.stripe_object_id,
        error_reason=record.error_reason,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        run_at=timestamp(record.run_at),
        target_id=record.target_id,
    )


def plan(price: Json, product: Json | None) -> pb.Plan:
    """A recurring price with its product."""
    recurring = price.get("recurring") or {}
    return pb.Plan(
        price_id=str(price.get("id") or ""),
        product_id=billing.expandable_id(price.get("product")),
        name=str((product or {}).get("name") or price.get("nickname") or ""),
        tier=billing.tier_of(price, product),
        amount=money(price.get("unit_amount"), price.get("currency")),
        interval=str(recurring.get("interval") or ""),
        interval_count=int(recurring.get("interval_count") or 1),
        features=billing.features_of(product),
    )


def invoice(data: Json) -> pb.InvoiceSummary:
    """An invoice's headline figures and links."""
    parent = data.get("parent") or {}
    subscription_id = billing.expandable_id(
        (parent.get("subscription_details") or {}).get("subscription") or data.get("subscription")
    )
    return pb.InvoiceSummary(
        invoice_id=str(data.get("id") or ""),
        number=str(data.get("number") or ""),
        status=str(data.get("status") or ""),
        amount_due=money(data.get("amount_due"), data.get("currency")),
        amount_paid=money(data.get("amount_paid"), data.get("currency")),
        created_at=timestamp(int(data.get("created") or 0)),
        period_start=timestamp(int(data["period_start"])) if data.get("period_start") else None,
        period_end=timestamp(int(data["period_end"])) if data.get("period_end") else None,
        invoice_pdf_url=str(data.get("invoice_pdf") or ""),
        hosted_invoice_url=str(data.get("hosted_invoice_url") or ""),
        subscription_id=subscription_id,
    )


def card_of(payment_method: Json | None) -> tuple[str, str, str]:
    """(type, brand, last 4) of a payment method: nothing more of a card is read."""
    if not payment_method:
        return "", "", ""
    card = payment_method.get("card") or {}
    return (
        str(payment_method.get("type") or ""),
        str(card.get("brand") or ""),
        str(card.get("last4") or ""),
    )


def charge(data: Json) -> pb.Charge:
    """A charge's headline figures (brand and last 4 only)."""
    details = (data.get("payment_method_details") or {}).get("card") or {}
    return pb.Charge(
        charge_id=str(data.get("id") or ""),
        amount=money(data.get("amount"), data.get("currency")),
        amount_refunded=money(data.get("amount_refunded"), data.get("currency")),
        created_at=timestamp(int(data.get("created") or 0)),
        status=str(data.get("status") or ""),
        captured=bool(data.get("captured")),
        refunded=bool(data.get("refunded")),
        invoice_id=billing.expandable_id(data.get("invoice")),
        payment_intent_id=billing.expandable_id(data.get("payment_intent")),
        card_brand=str(details.get("brand") or ""),
        card_last4=str(details.get("last4") or ""),
        description=str(data.get("description") or ""),
    )


def subscription(
    data: Json,
    *,
    price: Json | None,
    product: Json | None,
    payment_method: Json | None,
    latest_invoice: Json | None,
    in_place: bool,
) -> pb.Subscription:
    """A subscription in the bot's terms."""
    pause = data.get("pause_collection") or None
    method_type, brand, last4 = card_of(payment_method)
    message = pb.Subscription(
        subscription_id=str(data.get("id") or ""),
        plan=plan(price, product) if price else None,
        status=_SUBSCRIPTION_STATUS.get(
            str(data.get("status")), pb.SUBSCRIPTION_STATUS_UNSPECIFIED
        ),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        paused=pause is not None,
        payment_method_type=method_type,
        card_brand=brand,
        card_last4=last4,
        latest_invoice=invoice(latest_invoice) if latest_invoice else None,
        plan_change_in_place=in_place,
    )
    item = billing.first_item(data) or {}
    period_start = data.get("current_period_start") or item.get("current_period_start")
    period_end = data.get("current_period_end") or item.get("current_period_end")
    if period_start:
        message.current_period_start.FromSeconds(int(period_start))
    if period_end:
        message.current_period_end.FromSeconds(int(period_end))
    if data.get("trial_end"):
        message.trial_end.FromSeconds(int(data["trial_end"]))
    if data.get("cancel_at"):
        message.cancel_at.FromSeconds(int(data["cancel_at"]))
    if pause and pause.get("resumes_at"):
        message.pause_resumes_at.FromSeconds(int(pause["resumes_at"]))
    return message
