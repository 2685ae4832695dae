"""Contacts' audience tags, customer matching and content gating."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from runtime import errors

CUSTOMER_STATUSES = ("active", "trialing", "past_due", "canceled")
# Lowest to highest: a requirement of "growth" is met by growth, business and enterprise.
PLAN_TIERS = ("free", "starter", "growth", "business", "enterprise")


@dataclass(frozen=True)
class Tags:
    """The audience tags and, for each, the source time of its value."""

    customer_status: str = ""
    customer_status_at: datetime | None = None
    plan_tier: str = ""
    plan_tier_at: datetime | None = None
    trial_ends: datetime | None = None
    trial_ends_at: datetime | None = None


@dataclass(frozen=True)
class TagUpdate:
    """An update from a source (a Stripe event) at a point in time; None leaves a tag alone."""

    source_time: datetime
    customer_status: str | None = None
    plan_tier: str | None = None
    trial_ends: datetime | None = None
    set_trial_ends: bool = False


def _newer(stored_at: datetime | None, source_time: datetime) -> bool:
    # Ties go to the update: the same event replayed writes the same value.
    return stored_at is None or source_time >= stored_at


def apply_update(tags: Tags, update: TagUpdate) -> Tags:
    """The tags after the update: each tag changes only if the update is not older than it,
    so events arriving out of order leave the newest state in place."""
    result = tags
    if update.customer_status is not None and _newer(tags.customer_status_at, update.source_time):
        result = replace(
            result, customer_status=update.customer_status, customer_status_at=update.source_time
        )
    if update.plan_tier is not None and _newer(tags.plan_tier_at, update.source_time):
        result = replace(result, plan_tier=update.plan_tier, plan_tier_at=update.source_time)
    if update.set_trial_ends and _newer(tags.trial_ends_at, update.source_time):
        result = replace(result, trial_ends=update.trial_ends, trial_ends_at=update.source_time)
    return result


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding spaces."""
    return email.strip().casefold()


@dataclass(frozen=True)
class Candidate:
    """A Stripe customer that may belong to the contact."""

    stripe_customer_id: str
    email: str


def match_customer(contact_email: str, candidates: Sequence[Candidate]) -> str:
    """The one candidate whose email is the contact's; none or several is an error, never a
    guess."""
    wanted = normalize_email(contact_email)
    if not wanted:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "CUSTOMER_NOT_LINKED",
            "the contact has no email to match",
        )
    matches = sorted(
        {c.stripe_customer_id for c in candidates if normalize_email(c.email) == wanted}
    )
    if not matches:
        raise errors.ServiceError(
            errors.Kind.NOT_FOUND, "NOT_FOUND", "no Stripe customer has the contact's email"
        )
    if len(matches) > 1:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "AMBIGUOUS_CUSTOMER_MATCH",
            "several Stripe customers have the contact's email",
            metadata={"candidates": ",".join(matches)},
        )
    return matches[0]


@dataclass(frozen=True)
class Requirement:
    """What gated content requires; every set part must hold."""

    customer_statuses: frozenset[str] = frozenset()
    minimum_plan_tier: str = ""
    require_active_trial: bool = False


def unmet_requirements(tags: Tags, requirement: Requirement, now: datetime) -> list[str]:
    """Names of the requirement's parts the tags do not meet (empty: access allowed)."""
    unmet = []
    if requirement.customer_statuses and tags.customer_status not in requirement.customer_statuses:
        unmet.append("customer_statuses")
    if requirement.minimum_plan_tier:
        have = PLAN_TIERS.index(tags.plan_tier) if tags.plan_tier in PLAN_TIERS else -1
        if have < PLAN_TIERS.index(requirement.minimum_plan_tier):
            unmet.append("minimum_plan_tier")
    if requirement.require_active_trial and (
        tags.customer_status != "trialing" or tags.trial_ends is None or tags.trial_ends <= now
    ):
        unmet.append("require_active_trial")
    return unmet
