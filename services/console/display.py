"""How values read on a page: money, times, ages, enum names (Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2
from askvault.common.v1 import common_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from runtime import currency

_ENUMS: dict[str, tuple[Any, str]] = {
    "escalation_state": (policy_pb2.EscalationState, "ESCALATION_STATE_"),
    "action": (common_pb2.BillingAction, "BILLING_ACTION_"),
    "bounds_change_state": (policy_pb2.BoundsChangeState, "BOUNDS_CHANGE_STATE_"),
    "counter_period": (policy_pb2.CounterPeriod, "COUNTER_PERIOD_"),
    "actor_kind": (common_pb2.ActorKind, "ACTOR_KIND_"),
    "message_status": (notifier_pb2.MessageStatus, "MESSAGE_STATUS_"),
    "channel": (notifier_pb2.Channel, "CHANNEL_"),
    "template": (notifier_pb2.Template, "TEMPLATE_"),
    "outcome": (billing_pb2.EscalationOutcome, "ESCALATION_OUTCOME_"),
    "plan": (policy_pb2.AskVaultPlan, "ASK_VAULT_PLAN_"),
}


def label(value: int, kind: str) -> str:
    """An enum value as words ("ESCALATION_STATE_OPEN" -> "open"); "—" when unset."""
    wrapper, prefix = _ENUMS[kind]
    try:
        name = str(wrapper.Name(value))
    except ValueError:
        return str(value)
    if name.endswith("_UNSPECIFIED"):
        return "—"
    return name.removeprefix(prefix).replace("_", " ").lower()


def money(value: common_pb2.Money | None) -> str:
    """1234 usd -> "12.34 USD"; "—" when unset."""
    if value is None or not value.currency:
        return "—"
    amount = currency.number(
        value.amount_minor, value.currency, grouped=True, drop_zero_decimals=False
    )
    return f"{amount} {value.currency.upper()}"


def moment(value: timestamp_pb2.Timestamp | None) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=UTC)


def when(value: timestamp_pb2.Timestamp | None) -> str:
    """A timestamp in UTC, to the minute; "—" when unset."""
    at = moment(value)
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def age(value: timestamp_pb2.Timestamp | None, now: datetime | None = None) -> str:
    """How long ago: "3 d 4 h", "5 h 2 min", "7 min"."""
    at = moment(value)
    if at is None:
        return "—"
    seconds = max(0, int(((now or datetime.now(UTC)) - at).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def install(environment: Any) -> None:
    """Registers the filters on a Jinja environment."""
    environment.filters.update(label=label, money=money, when=when, age=age, percent=percent)
