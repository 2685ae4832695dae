"""The audit entries policy's use cases record."""

from __future__ import annotations

from datetime import datetime

from policy import grant_store
from policy.domain import audit
from policy.domain.model import Action, Confirmation, Details

# Who resolves grants: the billing gateway (the mesh authenticates it; the audit names it).
ENFORCEMENT_POINT = "billing_gateway"


def _amount(details: Details) -> tuple[int, str]:
    return (details.amount.amount_minor, details.amount.currency) if details.amount else (0, "")


def entry(
    now: datetime,
    kind: str,
    *,
    actor: tuple[str, str],
    contact_id: str = "",
    customer: str = "",
    action: Action | None = None,
    details: Details | None = None,
    outcome: str = "",
    subject_id: str = "",
    confirmation: Confirmation | None = None,
) -> audit.Entry:
    """An entry of ``kind`` by ``actor`` (kind, id)."""
    amount_minor, currency = _amount(details) if details else (0, "")
    return audit.Entry(
        occurred_at=now,
        actor_kind=actor[0],
        actor_id=actor[1],
        kind=kind,
        contact_id=contact_id,
        stripe_customer_id=customer,
        action=action.value if action else "",
        amount_minor=amount_minor,
        currency=currency,
        outcome=outcome,
        subject_id=subject_id,
        confirmation=confirmation,
    )


def grant_entry(
    now: datetime, kind: str, record: grant_store.GrantRecord, outcome: str
) -> audit.Entry:
    """An entry about a grant, by the enforcement point, with the grant's parameters."""
    grant = record.grant
    return entry(
        now,
        kind,
        actor=("service", ENFORCEMENT_POINT),
        contact_id=grant.contact_id,
        customer=grant.details.stripe_customer_id,
        action=grant.action,
        details=grant.details,
        outcome=outcome,
        subject_id=grant.grant_id,
    )
