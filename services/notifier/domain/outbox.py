"""The outbox's rules: which channel a message takes, what a failed attempt leads to
(retry with backoff, fall back to email, dead letter), and how provider statuses move a
message forward (never backwards)."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from runtime import errors

# Channels as stored.
EMAIL = "email"
WHATSAPP = "whatsapp"
HELPDESK_WEBHOOK = "helpdesk_webhook"

# Statuses as stored.
QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"
READ = "read"
FAILED = "failed"
DEAD = "dead"

# Progress of an accepted message; a status only ever moves to a higher rank.
_RANK = {SENT: 1, DELIVERED: 2, READ: 3}

# The customer-service window an inbound WhatsApp message opens.
WHATSAPP_WINDOW = timedelta(hours=24)

# WhatsApp Cloud API error codes (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
WA_THROUGHPUT = 130429  # cloud API throughput reached: retry later
WA_PAIR_RATE = 131056  # too many messages to this number: retry later
WA_UNDELIVERABLE = 131026  # not a WhatsApp user, old app, terms not accepted: use email
WA_REENGAGEMENT = 131047  # more than 24 h since the customer wrote, no template: use email
WA_TRANSIENT_CODES = frozenset({WA_THROUGHPUT, WA_PAIR_RATE, 1, 2, 131000, 131016})
WA_FALLBACK_CODES = frozenset({WA_UNDELIVERABLE, WA_REENGAGEMENT})


class FailureKind(enum.Enum):
    """What a failed attempt means for the message."""

    # Try the same channel again later (throttling, 4xx SMTP, 5xx, timeouts, resets).
    TRANSIENT = "transient"
    # This channel cannot reach the contact; email may.
    FALLBACK = "fallback"
    # Retrying cannot help (a refused mailbox, a bad request, a missing attachment).
    PERMANENT = "permanent"


@dataclass(frozen=True)
class DeliveryFailure(Exception):
    """A failed delivery attempt, raised by the channels and judged by ``after_failure``."""

    kind: FailureKind
    error: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.error}"


def classify_whatsapp(http_status: int, code: int) -> FailureKind:
    """The meaning of a Cloud API error response."""
    if code in WA_FALLBACK_CODES:
        return FailureKind.FALLBACK
    if code in WA_TRANSIENT_CODES or http_status >= 500 or http_status == 429:
        return FailureKind.TRANSIENT
    # Anything else (bad parameters, an unknown template, a revoked token) will not get
    # better by retrying; email still reaches the customer.
    return FailureKind.FALLBACK


def classify_smtp(code: int) -> FailureKind:
    """The meaning of an SMTP reply code: 4xx is temporary by definition, 5xx is final."""
    return FailureKind.TRANSIENT if code < 500 else FailureKind.PERMANENT


def classify_http(http_status: int) -> FailureKind:
    """The meaning of an HTTP error from a helpdesk webhook or an attachment URL."""
    if http_status >= 500 or http_status in (408, 425, 429):
        return FailureKind.TRANSIENT
    return FailureKind.PERMANENT


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with jitter: min(cap, base * 2^(attempt-1)), of which the upper
    half is random, so retries of many messages spread out instead of arriving together."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).uniform(0.0, ceiling / 2)
    return ceiling / 2 + jitter


@dataclass(frozen=True)
class Retry:
    """Queue again on the same channel after a delay."""

    delay_seconds: float
    error: str


@dataclass(frozen=True)
class FallBackToEmail:
    """Queue again at once, by email."""

    error: str


@dataclass(frozen=True)
class Dead:
    """Give up; the error is kept."""

    error: str


Decision = Retry | FallBackToEmail | Dead


@dataclass(frozen=True)
class RetryPolicy:
    """N and the backoff of the outbox."""

    max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float


def after_failure(
    failure: DeliveryFailure,
    *,
    channel: str,
    attempts: int,
    can_email: bool,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """What a failed attempt leads to. A fallback is not limited by the attempts made: the
    customer deserves one try on the channel that can reach them."""
    if failure.kind is FailureKind.FALLBACK:
        if channel == WHATSAPP and can_email:
            return FallBackToEmail(failure.error)
        return Dead(failure.error)
    if failure.kind is FailureKind.PERMANENT:
        return Dead(failure.error)
    if attempts >= policy.max_attempts:
        return Dead(f"gave up after {attempts} attempts: {failure.error}")
    return Retry(
        backoff_seconds(attempts, policy.backoff_base_seconds, policy.backoff_cap_seconds, rng),
        failure.error,
    )


# -- choosing a channel -----------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    """A contact's consent in force for one channel."""

    opted_in: bool
    whatsapp_number: str = ""


@dataclass(frozen=True)
class Route:
    """Where a new message goes: its channel and addresses."""

    channel: str
    email: str
    whatsapp_number: str
    webhook_url: str = ""


def _consent_required(channel: str) -> errors.ServiceError:
    return errors.ServiceError(
        errors.Kind.FAILED_PRECONDITION,
        "CONSENT_REQUIRED",
        f"the contact has not opted in to {channel}",
        metadata={"channel": channel},
    )


# The template that confirms a WhatsApp opt-out: the one WhatsApp message an opted-out
# contact gets, as the answer to their STOP (inside the customer-service window).
WHATSAPP_OPTED_OUT_TEMPLATE = "whatsapp_opted_out"


def choose_route(
    *,
    requested: str,
    email: str,
    whatsapp_number: str,
    whatsapp_consent: Consent | None,
    email_consent: Consent | None,
    whatsapp_enabled: bool,
    has_attachments: bool,
    whatsapp_capable: bool,
    answers_opt_out: bool = False,
) -> Route:
    """The channel of a customer message: WhatsApp only with an opt-in, else email.

    ``requested`` is "" (choose), EMAIL or WHATSAPP. Raises FAILED_PRECONDITION
    CONSENT_REQUIRED when the requested channel lacks consent, INVALID_ARGUMENT when no
    channel has an address. ``answers_opt_out``: the message confirms the contact's own
    WhatsApp opt-out, which a recorded consent (given, then withdrawn) is enough for.
    """
    opted_in = whatsapp_consent is not None and (whatsapp_consent.opted_in or answers_opt_out)
    number = (whatsapp_consent.whatsapp_number if whatsapp_consent else "") or whatsapp_number
    email_refused = email_consent is not None and not email_consent.opted_in
    if requested == WHATSAPP:
        if not opted_in:
            raise _consent_required(WHATSAPP)
        check = errors.Validator()
        check.require(bool(number), "recipient.whatsapp_number", "no WhatsApp number known")
        check.require(whatsapp_enabled, "channel", "WhatsApp is not set up for the workspace")
        check.require(whatsapp_capable, "channel", "this template does not go by WhatsApp")
        check.require(not has_attachments, "attachments", "attachments go by email only")
        check.check()
        return Route(WHATSAPP, email, number)
    usable = opted_in and bool(number) and whatsapp_enabled and whatsapp_capable
    if requested == "" and usable and not has_attachments:
        return Route(WHATSAPP, email, number)
    if not email:
        raise errors.invalid_argument(
            errors.FieldViolation("recipient.email", "required unless the message goes by WhatsApp")
        )
    if email_refused:
        raise _consent_required(EMAIL)
    return Route(EMAIL, email, number)


@dataclass(frozen=True)
class HandoffDestinations:
    """Where a workspace's hand-offs go."""

    agent_inbox: str
    helpdesk_webhook_url: str


def choose_handoff_route(requested: str, destinations: HandoffDestinations) -> Route:
    """A hand-off goes to every configured destination unless one is requested; its
    channel is the webhook when there is one (the email part rides along)."""
    inbox = destinations.agent_inbox if requested in ("", EMAIL) else ""
    webhook = destinations.helpdesk_webhook_url if requested in ("", HELPDESK_WEBHOOK) else ""
    if not inbox and not webhook:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "OPERATION_STATE",
            "the workspace has no agent inbox or helpdesk webhook for this hand-off",
        )
    return Route(HELPDESK_WEBHOOK if webhook else EMAIL, inbox, "", webhook)


# -- checks at delivery time ------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryContext:
    """What a worker knows about a claimed message's contact when it delivers it."""

    channel: str
    template_key: str
    email: str
    whatsapp_consent: Consent | None
    email_consent: Consent | None
    window_closes_at: datetime | None
    now: datetime


def precheck(context: DeliveryContext, *, free_form: bool) -> DeliveryFailure | None:
    """A reason not to use the message's channel now, or None. An opt-out recorded after
    the message was queued holds: the WhatsApp message goes by email instead (or dies)."""
    if context.channel == WHATSAPP:
        consent = context.whatsapp_consent
        answers_opt_out = context.template_key == WHATSAPP_OPTED_OUT_TEMPLATE
        if consent is None or not (consent.opted_in or answers_opt_out):
            return DeliveryFailure(FailureKind.FALLBACK, "the contact opted out of WhatsApp")
        if free_form and (
            context.window_closes_at is None or context.window_closes_at <= context.now
        ):
            return DeliveryFailure(
                FailureKind.FALLBACK, "free-form WhatsApp outside the 24 h customer-service window"
            )
    if context.channel == EMAIL and context.template_key != "handoff":
        consent = context.email_consent
        if consent is not None and not consent.opted_in:
            return DeliveryFailure(FailureKind.PERMANENT, "the contact opted out of email")
    return None


def can_fall_back_to_email(context: DeliveryContext) -> bool:
    """Whether email may carry a message WhatsApp could not."""
    refused = context.email_consent is not None and not context.email_consent.opted_in
    return bool(context.email) and not refused


# -- provider statuses ------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    """A WhatsApp status that moves the message forward."""

    status: str


@dataclass(frozen=True)
class StatusFailure:
    """WhatsApp reported a failure after accepting the message."""

    failure: DeliveryFailure


def apply_whatsapp_status(
    *, channel: str, current: str, reported: str, error_code: int, error_title: str
) -> StatusChange | StatusFailure | None:
    """How a status webhook changes a message; None when it changes nothing (a repeat, an
    older status arriving late, or a status of a message that already fell back to email).
    """
    if channel != WHATSAPP:
        return None
    if reported in _RANK:
        if current in _RANK and _RANK[reported] > _RANK[current]:
            return StatusChange(reported)
        return None
    if reported == FAILED and current in (SENT, DELIVERED):
        description = f"WhatsApp {error_code}: {error_title}".strip(": ")
        return StatusFailure(DeliveryFailure(classify_whatsapp(400, error_code), description))
    return None
