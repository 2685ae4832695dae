"""The gateway's protobuf messages as the edge's own values and as the JSON tool callers
receive: money, dates, plans, invoices and subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.common.v1 import common_pb2 as cpb
from edge.domain import formatting
from edge.domain.proposals import InvoiceRecord, Money


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A datetime as a protobuf Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def moment(stamp: timestamp_pb2.Timestamp) -> datetime:
    """A protobuf Timestamp as an aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def money(value: cpb.Money) -> Money:
    """A protobuf amount as the edge's own."""
    return Money(value.amount_minor, value.currency)


def money_pb(value: Money) -> cpb.Money:
    """The edge's amount as the protobuf the services take."""
    return cpb.Money(amount_minor=value.amount_minor, currency=value.currency)


def money_text(value: cpb.Money) -> str:
    """An amount the way the bot says it ("$49")."""
    return formatting.money(value.amount_minor, value.currency)


def date_text(zone: str, stamp: timestamp_pb2.Timestamp) -> str:
    """A date the way the bot says it, in the workspace's zone ("May 28, 2026")."""
    return formatting.date(moment(stamp), zone)


def short_date_text(zone: str, now: datetime, stamp: timestamp_pb2.Timestamp) -> str:
    """A date the short way ("May 28"; with the year when not this year's)."""
    return formatting.short_date(moment(stamp), zone, now)


def plan_text(plan: bpb.Plan) -> str:
    """A plan the way the bot names it ("Growth plan ($49/month)")."""
    per = formatting.interval(plan.interval, plan.interval_count)
    return f"{plan.name} plan ({money_text(plan.amount)}{per})"


def card_text(charge: bpb.Charge) -> str:
    """The charge's card as shown ("Visa •••• 4242"), or empty."""
    return f"{charge.card_brand.title()} •••• {charge.card_last4}" if charge.card_last4 else ""


def status_word(status: int) -> str:
    """A subscription status as a lower-case word ("active", "past_due")."""
    name = bpb.SubscriptionStatus.Name(status)  # type: ignore[arg-type]
    return name.removeprefix("SUBSCRIPTION_STATUS_").lower()


def invoice_record(invoice: bpb.InvoiceSummary) -> InvoiceRecord:
    """An invoice summary as the edge keeps it (in an invoice bundle's proposal)."""
    return InvoiceRecord(
        invoice_id=invoice.invoice_id,
        number=invoice.number,
        status=invoice.status,
        amount_due=money(invoice.amount_due),
        amount_paid=money(invoice.amount_paid),
        created_at=moment(invoice.created_at),
        pdf_url=invoice.invoice_pdf_url,
        hosted_url=invoice.hosted_invoice_url,
    )


def money_json(value: cpb.Money) -> dict[str, Any]:
    """An amount as JSON, with its display text."""
    return money(value).as_json()


def plan_json(plan: bpb.Plan) -> dict[str, Any]:
    """A plan of the catalog as JSON."""
    return {
        "price_id": plan.price_id,
        "name": plan.name,
        "tier": plan.tier,
        "amount": money_json(plan.amount),
        "interval": plan.interval,
        "features": list(plan.features),
    }


def invoice_json(invoice: bpb.InvoiceSummary) -> dict[str, Any]:
    """An invoice summary as JSON."""
    return invoice_record(invoice).as_json()


def subscription_json(sub: bpb.Subscription) -> dict[str, Any]:
    """A subscription as JSON."""
    return {
        "subscription_id": sub.subscription_id,
        "plan": plan_json(sub.plan),
        "status": status_word(sub.status),
        "current_period_end": moment(sub.current_period_end).isoformat()
        if sub.HasField("current_period_end")
        else None,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "paused": sub.paused,
        "plan_change_in_place": sub.plan_change_in_place,
        "scheduled_cancellation": sub.scheduled_cancellation.operation_id or None,
        "latest_invoice": invoice_json(sub.latest_invoice)
        if sub.latest_invoice.invoice_id
        else None,
    }
