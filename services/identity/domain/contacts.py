"""Contacts' audience tags, customer matching and content gating."""

from __future__ import annotations

import re
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


# Where a contact's Stripe customer binding came from (Contact.binding_source).
SIGNED_EMAIL = "signed_email"
TOKEN_CLAIM = "token_claim"  # noqa: S105 - a binding source name, not a secret
CUSTOMER_METADATA = "customer_metadata"
ADMIN = "admin"
LEGACY_UNSIGNED = "legacy_unsigned"
BINDING_SOURCES = (SIGNED_EMAIL, TOKEN_CLAIM, CUSTOMER_METADATA, ADMIN, LEGACY_UNSIGNED)

# A Stripe metadata key as a workspace may configure it: safe inside a search query.
METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Candidate:
    """A Stripe customer that may belong to the contact."""

    stripe_customer_id: str
    email: str
    metadata_value: str = ""


@dataclass(frozen=True)
class SignedEmails:
    """What a verification proved about the visitor's email: the signed one (empty when
    none was signed) and the one they merely typed."""

    signed: str
    claimed: str


def split_emails(method: str, user_id: str, request_email: str, token_email: str) -> SignedEmails:
    """Which email the workspace signed: a token's email claim, or the user_hash input when
    there is no user id (the hash is over the email). Any other email is only claimed."""
    request_email = request_email.strip()
    if method == "token":
        signed = token_email.strip()
        claimed = "" if normalize_email(request_email) == normalize_email(signed) else request_email
        return SignedEmails(signed=signed, claimed=claimed)
    if not user_id:
        return SignedEmails(signed=request_email, claimed="")
    return SignedEmails(signed="", claimed=request_email)


def is_current(stored_email: str, stored_claimed_email: str, emails: SignedEmails) -> bool:
    """Whether a stored contact already holds what this visit signed and claimed (an empty
    email keeps the stored one), so that a known visitor costs a read and no write."""
    return (not emails.signed or stored_email == emails.signed) and (
        not emails.claimed or stored_claimed_email == emails.claimed
    )


def needs_token_binding(
    stored_customer_id: str, stored_binding_source: str, signed_customer_id: str
) -> bool:
    """Whether a token's signed customer must (re-)bind the contact: the workspace signing
    the customer is the strongest fact there is."""
    return bool(signed_customer_id) and (
        stored_customer_id != signed_customer_id or stored_binding_source != TOKEN_CLAIM
    )


def _one(matches: list[str], what: str) -> str:
    if not matches:
        raise errors.ServiceError(
            errors.Kind.NOT_FOUND, "NOT_FOUND", f"no Stripe customer has the contact's {what}"
        )
    if len(matches) > 1:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "AMBIGUOUS_CUSTOMER_MATCH",
            f"several Stripe customers have the contact's {what}",
            metadata={"candidates": ",".join(matches)},
        )
    return matches[0]


def match_customer(signed_email: str, candidates: Sequence[Candidate]) -> str:
    """The one candidate whose email is the contact's signed email; none or several is an
    error, never a guess. Without a signed email nothing is matched: an email the visitor
    merely typed proves nothing."""
    wanted = normalize_email(signed_email)
    if not wanted:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "EMAIL_NOT_SIGNED",
            "the contact has no signed email to match",
        )
    return _one(
        sorted({c.stripe_customer_id for c in candidates if normalize_email(c.email) == wanted}),
        "email",
    )


def match_by_metadata(
    user_id: str, metadata_key: str, configured_key: str, candidates: Sequence[Candidate]
) -> str:
    """The one candidate whose metadata value (under the workspace's configured key) is the
    contact's verified user id."""
    if not configured_key or metadata_key != configured_key:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "FAILED_PRECONDITION",
            "metadata_key is not the workspace's customer metadata key",
        )
    if not user_id:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "FAILED_PRECONDITION",
            "the contact has no user id to match",
        )
    return _one(
        sorted({c.stripe_customer_id for c in candidates if c.metadata_value == user_id}),
        "user id",
    )


def rebinding_source(
    current_customer: str, current_source: str, new_customer: str, source: str
) -> str:
    """The binding source to store when a match found ``new_customer``. A bound contact is
    never moved by a match; the same customer again is a success that only upgrades a legacy
    binding to the signed fact that now confirms it."""
    if current_customer and current_customer != new_customer:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "CUSTOMER_ALREADY_BOUND",
            "the contact is bound to another Stripe customer",
        )
    if current_customer and current_source not in ("", LEGACY_UNSIGNED):
        return current_source
    return source


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
