"""What one turn is made of: the request, who is asking, the reply, and what every step of a
turn runs on (settings, database pool, the services' stubs, limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import jwt

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.identity.v1 import identity_pb2 as ipb
from edge import ratelimit, workspace_terms
from edge.domain.intents import Parsed
from edge.peers import Peers
from edge.settings import EdgeSettings
from runtime.secretbox import SecretBox


@dataclass(frozen=True)
class VisitorIdentity:
    """How the visitor proves who they are (from the widget or the request headers)."""

    user_id: str = ""
    email: str = ""
    user_hash: str = ""
    token: str = ""

    @property
    def presented(self) -> bool:
        """Whether any credential came with the request."""
        return bool(self.user_hash or self.token)

    @property
    def key(self) -> str:
        """Who the visitor says they are (unverified): scopes a tool caller's conversation id,
        so that two visitors of one LLM host do not meet in one conversation. Ownership, not
        this key, keeps them apart when someone lies."""
        return self.user_id or _token_subject(self.token) or self.email or "anonymous"


def _token_subject(token: str) -> str:
    """A visitor token's ``sub`` claim, read without verifying it (identity verifies)."""
    if not token:
        return ""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else ""


@dataclass(frozen=True)
class QuoteAnswer:
    """The person's answer to one quote, posted by the chat UI with the visitor's own proof
    (``POST /v1/confirmations``)."""

    quote_id: str
    terms_hash: str
    confirm: bool


@dataclass(frozen=True)
class Request:
    """One message to answer, from the chat, a tool call or WhatsApp."""

    workspace_id: str
    conversation_id: str
    visitor: VisitorIdentity
    text: str
    channel: str = "chat"
    # Set by tools: the parsed request, instead of parsing text.
    parsed: Parsed | None = None
    # Set by the confirm endpoint: the person's own answer to one quote.
    quote_answer: QuoteAnswer | None = None
    # Set by money tools (never previews): a quote of this kind the person confirmed on the
    # confirmation page runs when the tool is called again.
    runs_confirmed_quote: bool = False


@dataclass
class Action:
    """A button or link offered with the reply."""

    type: str
    label: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    """What the bot answers."""

    text: str
    intent: str = ""
    actions: list[Action] = field(default_factory=list)
    escalated: bool = False
    escalation_id: str = ""
    # Structured result for tool callers.
    data: dict[str, Any] = field(default_factory=dict)
    # "ok", "needs_confirmation", "escalated", "denied", "not_found", "handoff", "error".
    status: str = "ok"
    # The verified contact the turn answered ('' for an unverified visitor); not in the JSON.
    contact_id: str = ""


class StripeUnavailable(Exception):
    """The billing gateway could not reach Stripe (or did not answer in time)."""


class NotFound(Exception):
    """The object named does not exist for this customer."""


class ConversationNotOwned(Exception):
    """The conversation belongs to another contact: the turn is refused, nothing stored."""


class NotLinked(Exception):
    """The contact has no Stripe customer (none matched its email)."""


@dataclass
class TurnReads:
    """What the turn already read from the billing gateway, for the notes it leaves agents:
    a hand-off's summary uses these and never calls again to fill itself (issue 16)."""

    subscription: bpb.GetSubscriptionResponse | None = None


@dataclass(frozen=True)
class Context:
    """Who is asking, in which conversation, and when."""

    request: Request
    contact: ipb.Contact
    assertion: str
    now: datetime
    zone: str
    # The prices the workspace offers for self-serve plan changes (policy's bounds, through
    # GetWorkspaceTerms); empty for the default offer.
    self_serve_price_ids: tuple[str, ...] = ()
    # Filled as the turn reads (gateway.subscription records its answer here).
    reads: TurnReads = field(default_factory=TurnReads, compare=False)

    @property
    def workspace_id(self) -> str:
        return self.request.workspace_id

    @property
    def conversation_id(self) -> str:
        return self.request.conversation_id


@dataclass(frozen=True)
class TurnDeps:
    """What every step of a turn runs on; built once per process."""

    settings: EdgeSettings
    pool: asyncpg.Pool
    peers: Peers
    limits: ratelimit.TurnLimits
    # Seals WhatsApp link credentials; None when no encryption key is configured.
    secret_box: SecretBox | None
    # The workspaces' terms from policy (time zone, self-serve prices), cached briefly.
    terms: workspace_terms.TermsCache

    @classmethod
    def build(
        cls,
        settings: EdgeSettings,
        pool: asyncpg.Pool,
        peers: Peers,
        limits: ratelimit.TurnLimits | None = None,
    ) -> TurnDeps:
        """The parts from the settings (limits from the settings unless given)."""
        keys = settings.secrets_encryption_keys.get_secret_value()
        return cls(
            settings=settings,
            pool=pool,
            peers=peers,
            limits=limits or ratelimit.TurnLimits.from_settings(settings, pool),
            secret_box=SecretBox(keys) if keys else None,
            terms=workspace_terms.TermsCache(
                peers,
                fallback_zone=settings.workspace_timezone,
                ttl_seconds=settings.workspace_terms_ttl_seconds,
            ),
        )
