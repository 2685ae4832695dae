"""Mapping between policy's protos and its domain values (no rules here)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from google.protobuf import json_format

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy import bounds_store, escalation_store, grant_store
from policy.domain import audit, decisions, grants
from policy.domain.bounds import AskVaultPlan, Bounds
from policy.domain.model import Action, Channel, Confirmation, Details, Money
from policy.domain.periods import Period
from runtime import convert as runtime_convert

ACTION_FROM_PB: dict[common_pb2.BillingAction.ValueType, Action] = {
    common_pb2.BILLING_ACTION_REFUND: Action.REFUND,
    common_pb2.BILLING_ACTION_CHANGE_PLAN: Action.CHANGE_PLAN,
    common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION: Action.CANCEL_SUBSCRIPTION,
    common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION: Action.PAUSE_SUBSCRIPTION,
    common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION: Action.RESUME_SUBSCRIPTION,
    common_pb2.BILLING_ACTION_RETRY_PAYMENT: Action.RETRY_PAYMENT,
    common_pb2.BILLING_ACTION_START_RESUBSCRIPTION: Action.START_RESUBSCRIPTION,
}
ACTION_TO_PB: dict[str, common_pb2.BillingAction.ValueType] = {
    action.value: number for number, action in ACTION_FROM_PB.items()
}
VERDICT_TO_PB = {
    decisions.Verdict.ALLOW: pb.DECISION_ALLOW,
    decisions.Verdict.NEEDS_CONFIRMATION: pb.DECISION_NEEDS_CONFIRMATION,
    decisions.Verdict.ESCALATE: pb.DECISION_ESCALATE,
    decisions.Verdict.DENY: pb.DECISION_DENY,
}
PLAN_FROM_PB = {
    pb.ASK_VAULT_PLAN_UNSPECIFIED: AskVaultPlan.UNSPECIFIED,
    pb.ASK_VAULT_PLAN_FREE: AskVaultPlan.FREE,
    pb.ASK_VAULT_PLAN_TEAM: AskVaultPlan.TEAM,
    pb.ASK_VAULT_PLAN_BUSINESS: AskVaultPlan.BUSINESS,
    pb.ASK_VAULT_PLAN_ENTERPRISE: AskVaultPlan.ENTERPRISE,
}
PLAN_TO_PB = {plan: number for number, plan in PLAN_FROM_PB.items()}
PERIOD_FROM_PB = {
    # Unspecified means the default period, as the contract says.
    pb.COUNTER_PERIOD_CALENDAR_MONTH: Period.CALENDAR_MONTH,
    pb.COUNTER_PERIOD_CALENDAR_WEEK: Period.CALENDAR_WEEK,
    pb.COUNTER_PERIOD_CALENDAR_DAY: Period.CALENDAR_DAY,
}
PERIOD_TO_PB = {period: number for number, period in PERIOD_FROM_PB.items()}
ESCALATION_STATE_TO_PB = {
    "open": pb.ESCALATION_STATE_OPEN,
    "approved": pb.ESCALATION_STATE_APPROVED,
    "rejected": pb.ESCALATION_STATE_REJECTED,
    "executed": pb.ESCALATION_STATE_EXECUTED,
    "failed": pb.ESCALATION_STATE_FAILED,
}
ESCALATION_STATE_FROM_PB = {number: name for name, number in ESCALATION_STATE_TO_PB.items()}
CHANGE_STATE_TO_PB = {
    "pending": pb.BOUNDS_CHANGE_STATE_PENDING,
    "applied": pb.BOUNDS_CHANGE_STATE_APPLIED,
    "superseded": pb.BOUNDS_CHANGE_STATE_SUPERSEDED,
}
CHANGE_STATE_FROM_PB = {number: name for name, number in CHANGE_STATE_TO_PB.items()}
CHANNEL_FROM_PB = {
    pb.CONFIRMATION_CHANNEL_CHAT_TURN: Channel.CHAT_TURN,
    pb.CONFIRMATION_CHANNEL_CONFIRM_ENDPOINT: Channel.CONFIRM_ENDPOINT,
    pb.CONFIRMATION_CHANNEL_MCP_ELICITATION: Channel.MCP_ELICITATION,
    pb.CONFIRMATION_CHANNEL_WHATSAPP_REPLY: Channel.WHATSAPP_REPLY,
}
CHANNEL_TO_PB = {channel: number for number, channel in CHANNEL_FROM_PB.items()}
SCOPE_TO_PB = {
    decisions.Scope.VISITOR: pb.COUNTER_SCOPE_VISITOR,
    decisions.Scope.CUSTOMER: pb.COUNTER_SCOPE_CUSTOMER,
}
ACTOR_TO_PB = {
    "visitor": common_pb2.ACTOR_KIND_VISITOR,
    "bot": common_pb2.ACTOR_KIND_BOT,
    "admin": common_pb2.ACTOR_KIND_ADMIN,
    "service": common_pb2.ACTOR_KIND_SERVICE,
}


# Shared conversions, re-exported so the mapping reads from one module.
timestamp = runtime_convert.timestamp
duration = runtime_convert.duration


def money_pb(value: Money | None) -> common_pb2.Money | None:
    """A Money message, or None."""
    if value is None:
        return None
    return common_pb2.Money(amount_minor=value.amount_minor, currency=value.currency)


def details_from_pb(message: pb.ActionDetails) -> Details:
    """Domain details; unset amount and time stay None."""
    return Details(
        stripe_customer_id=message.stripe_customer_id,
        charge_id=message.charge_id,
        subscription_id=message.subscription_id,
        invoice_id=message.invoice_id,
        amount=(
            Money(message.amount.amount_minor, message.amount.currency)
            if message.HasField("amount")
            else None
        ),
        charge_created_at=(
            message.charge_created_at.ToDatetime(UTC)
            if message.HasField("charge_created_at")
            else None
        ),
        target_price_id=message.target_price_id,
    )


def details_pb(details: Details) -> pb.ActionDetails:
    """The details as a message."""
    return pb.ActionDetails(
        stripe_customer_id=details.stripe_customer_id,
        charge_id=details.charge_id,
        subscription_id=details.subscription_id,
        invoice_id=details.invoice_id,
        amount=money_pb(details.amount),
        charge_created_at=timestamp(details.charge_created_at),
        target_price_id=details.target_price_id,
    )


def confirmation_from_pb(message: pb.Confirmation) -> Confirmation:
    """A presented confirmation; an unknown or unset channel and an unset expiry stay None
    (the rules refuse them)."""
    quote = message.quote
    return Confirmation(
        quote_id=quote.quote_id,
        summary=quote.summary,
        terms_hash=quote.terms_hash,
        expires_at=quote.expires_at.ToDatetime(UTC) if quote.HasField("expires_at") else None,
        channel=CHANNEL_FROM_PB.get(message.channel),
        confirmed_at=(
            message.confirmed_at.ToDatetime(UTC) if message.HasField("confirmed_at") else None
        ),
    )


def confirmation_pb(confirmation: Confirmation) -> pb.Confirmation:
    """A stored confirmation as a message."""
    return pb.Confirmation(
        quote=pb.Quote(
            quote_id=confirmation.quote_id,
            summary=confirmation.summary,
            expires_at=timestamp(confirmation.expires_at),
            terms_hash=confirmation.terms_hash,
        ),
        channel=(
            CHANNEL_TO_PB[confirmation.channel]
            if confirmation.channel
            else pb.CONFIRMATION_CHANNEL_UNSPECIFIED
        ),
        confirmed_at=timestamp(confirmation.confirmed_at),
    )


def to_json(message: Any) -> dict[str, Any]:
    """A message's JSON form for storage."""
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def grant_pb(record: grant_store.GrantRecord) -> pb.Grant:
    """A grant as a message."""
    grant = record.grant
    return pb.Grant(
        grant_id=grant.grant_id,
        workspace_id=grant.workspace_id,
        contact_id=grant.contact_id,
        action=ACTION_TO_PB[grant.action.value],
        details=details_pb(grant.details),
        expires_at=timestamp(grant.expires_at),
        state=pb.GrantState.Value(f"GRANT_STATE_{grant.state.value.upper()}"),
        cancellation_grace=duration(grant.cancellation_grace),
        created_at=timestamp(grant.created_at),
    )


def grant_state_name(state: grants.State) -> str:
    """COMMITTED, RELEASED, ... for audit outcomes."""
    return state.value.upper()


def usage_pb(usage: decisions.Usage) -> pb.Usage:
    """A counter's numbers as a message."""
    if usage.counter is decisions.Counter.REFUND_AMOUNT:
        return pb.Usage(
            action=common_pb2.BILLING_ACTION_REFUND,
            used_amount=common_pb2.Money(amount_minor=usage.used, currency=usage.currency),
            limit_amount=common_pb2.Money(amount_minor=usage.limit, currency=usage.currency),
            remaining_amount=common_pb2.Money(
                amount_minor=usage.remaining, currency=usage.currency
            ),
            resets_at=timestamp(usage.resets_at),
            scope=SCOPE_TO_PB[usage.scope],
        )
    return pb.Usage(
        action=(
            common_pb2.BILLING_ACTION_START_RESUBSCRIPTION
            if usage.counter is decisions.Counter.RESUBSCRIPTIONS
            else common_pb2.BILLING_ACTION_CHANGE_PLAN
        ),
        used_count=usage.used,
        limit_count=usage.limit,
        remaining_count=usage.remaining,
        resets_at=timestamp(usage.resets_at),
        scope=SCOPE_TO_PB[usage.scope],
    )


def escalation_pb(record: escalation_store.EscalationRecord) -> pb.Escalation:
    """An escalation as a message."""
    details = pb.ActionDetails()
    json_format.ParseDict(record.details, details)
    context = pb.EscalationContext()
    json_format.ParseDict(record.context, context)
    return pb.Escalation(
        escalation_id=record.escalation_id,
        workspace_id=record.workspace_id,
        contact_id=record.contact_id,
        stripe_customer_id=record.stripe_customer_id,
        action=ACTION_TO_PB.get(record.action, common_pb2.BILLING_ACTION_UNSPECIFIED),
        details=details,
        reason=record.reason,
        context=context,
        state=ESCALATION_STATE_TO_PB[record.state],
        created_at=timestamp(record.created_at),
        decided_at=timestamp(record.decided_at),
        decided_by=record.decided_by,
        grant_id=record.grant_id,
        decision_note=record.decision_note,
        failure_reason=record.failure_reason,
        stripe_object_id=record.stripe_object_id,
        finished_at=timestamp(record.finished_at),
    )


def bounds_from_pb(
    message: pb.Bounds, default_period: Period, default_time_zone: str = "UTC"
) -> Bounds:
    """Proposed bounds (complete: an unset duration is zero, an unset period or time zone
    the default)."""
    return Bounds(
        askvault_plan=PLAN_FROM_PB.get(message.askvault_plan, AskVaultPlan.UNSPECIFIED),
        refund_caps=tuple(Money(cap.amount_minor, cap.currency) for cap in message.refund_caps),
        refund_window=message.refund_window.ToTimedelta(),
        plan_changes_per_period=message.plan_changes_per_period,
        cancellation_grace=message.cancellation_grace.ToTimedelta(),
        confirm_refunds=message.confirm_refunds,
        confirm_plan_changes=message.confirm_plan_changes,
        counter_period=PERIOD_FROM_PB.get(message.counter_period, default_period),
        time_zone=message.time_zone or default_time_zone,
        # A price named twice is named once (the order is kept, as the admin gave it).
        self_serve_price_ids=tuple(dict.fromkeys(message.self_serve_price_ids)),
        resubscriptions_per_period=message.resubscriptions_per_period,
    )


def bounds_pb(workspace_id: str, bounds: Bounds) -> pb.Bounds:
    """Bounds as a message."""
    return pb.Bounds(
        workspace_id=workspace_id,
        askvault_plan=PLAN_TO_PB[bounds.askvault_plan],
        refund_caps=[
            common_pb2.Money(amount_minor=cap.amount_minor, currency=cap.currency)
            for cap in bounds.refund_caps
        ],
        refund_window=duration(bounds.refund_window),
        plan_changes_per_period=bounds.plan_changes_per_period,
        cancellation_grace=duration(bounds.cancellation_grace),
        confirm_refunds=bounds.confirm_refunds,
        confirm_plan_changes=bounds.confirm_plan_changes,
        counter_period=PERIOD_TO_PB[bounds.counter_period],
        time_zone=bounds.time_zone,
        updated_at=timestamp(bounds.updated_at),
        self_serve_price_ids=bounds.self_serve_price_ids,
        resubscriptions_per_period=bounds.resubscriptions_per_period,
    )


def change_pb(record: bounds_store.BoundsChangeRecord) -> pb.BoundsChange:
    """A bounds change as a message."""
    return pb.BoundsChange(
        change_id=record.change_id,
        workspace_id=record.workspace_id,
        proposed=bounds_pb(record.workspace_id, record.proposed),
        state=CHANGE_STATE_TO_PB[record.state],
        proposed_by=record.proposed_by,
        approved_by=record.approved_by,
        created_at=timestamp(record.created_at),
        applied_at=timestamp(record.applied_at),
        loosened_fields=record.loosened_fields,
    )


def audit_event_pb(item: audit.ChainedEntry) -> pb.AuditEvent:
    """An audit entry as a message."""
    entry = item.entry
    return pb.AuditEvent(
        sequence=item.sequence,
        workspace_id=item.workspace_id,
        occurred_at=timestamp(entry.occurred_at),
        actor=common_pb2.Actor(
            kind=ACTOR_TO_PB.get(entry.actor_kind, common_pb2.ACTOR_KIND_UNSPECIFIED),
            id=entry.actor_id,
        ),
        kind=entry.kind,
        contact_id=entry.contact_id,
        stripe_customer_id=entry.stripe_customer_id,
        action=ACTION_TO_PB.get(entry.action, common_pb2.BILLING_ACTION_UNSPECIFIED),
        amount=(
            common_pb2.Money(amount_minor=entry.amount_minor, currency=entry.currency)
            if entry.currency
            else None
        ),
        outcome=entry.outcome,
        subject_id=entry.subject_id,
        hash=item.hash,
        previous_hash=item.previous_hash,
        key_id=item.key_id,
        confirmation=confirmation_pb(entry.confirmation) if entry.confirmation else None,
    )
