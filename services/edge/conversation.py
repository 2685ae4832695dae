"""One chat turn, from text to reply: identity says who, policy says whether, the billing
gateway does, the notifier tells. The edge only asks and explains.

Chat turns, tool calls and WhatsApp messages all come through ``Engine.handle``, so every
one of them passes identity, policy and confirmation the same way.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import grpc
import jwt
from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.common.v1 import common_pb2 as cpb
from askvault.identity.v1 import identity_pb2 as ipb
from askvault.notifier.v1 import notifier_pb2 as npb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import ratelimit, storage, whatsapp_linking
from edge.domain import formatting, intents, proposals, redaction
from edge.domain.intents import Intent, Parsed, Period
from edge.domain.proposals import ProposalKind, ProposalState, Quote
from edge.peers import Peers, error_reason, is_unavailable
from edge.settings import EdgeSettings
from runtime import ids, quotes
from runtime.secretbox import SecretBox

logger = logging.getLogger(__name__)

STRIPE_DOWN_REPLY = "I can't access billing right now; let me get someone to help."
_CAPABILITIES = (
    "I can help with your billing: your plan, renewal date and next bill; invoices (for "
    'example "invoices for the last 3 months"); a charge you think was taken twice; refunds; '
    "changing, pausing or canceling your plan; retrying a failed payment; updating your card; "
    "or getting you a human."
)
_PHONE = re.compile(r"\+?\d[\d ()-]{7,18}\d")


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

    def as_json(self) -> dict[str, str]:
        """The JSON form: type, label and the extra fields."""
        return {"type": self.type, "label": self.label, **self.extra}


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

    def as_json(self) -> dict[str, Any]:
        """The chat turn's JSON answer."""
        body: dict[str, Any] = {
            "reply": self.text,
            "actions": [action.as_json() for action in self.actions],
            "intent": self.intent,
            "escalated": self.escalated,
        }
        if self.escalation_id:
            body["escalation_id"] = self.escalation_id
        return body


class StripeUnavailable(Exception):
    """The billing gateway could not reach Stripe (or did not answer in time)."""


class NotFound(Exception):
    """The object named does not exist for this customer."""


class ConversationNotOwned(Exception):
    """The conversation belongs to another contact: the turn is refused, nothing stored."""


class NotLinked(Exception):
    """The contact has no Stripe customer (none matched its email)."""


@dataclass
class Context:
    """Who is asking, in which conversation, and when."""

    request: Request
    contact: ipb.Contact
    assertion: str
    now: datetime
    zone: str

    @property
    def workspace_id(self) -> str:
        return self.request.workspace_id

    @property
    def conversation_id(self) -> str:
        return self.request.conversation_id


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _dt(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _money(value: cpb.Money) -> str:
    return formatting.money(value.amount_minor, value.currency)


# The channels on which a typed "yes" is the person's own: their chat and their WhatsApp.
# A tool call is a model's, never the person's.
_YES_CHANNELS = {
    "chat": ppb.CONFIRMATION_CHANNEL_CHAT_TURN,
    "whatsapp": ppb.CONFIRMATION_CHANNEL_WHATSAPP_REPLY,
}
# The proposal a money tool makes, so that its retry after the person confirmed on the
# confirmation page runs that proposal.
_KIND_OF_INTENT = {
    Intent.REFUND: ProposalKind.REFUND,
    Intent.DUPLICATE_CHARGE: ProposalKind.REFUND,
    Intent.CHANGE_PLAN: ProposalKind.CHANGE_PLAN,
    Intent.CANCEL: ProposalKind.CANCEL,
    Intent.PAUSE: ProposalKind.PAUSE,
    Intent.RETRY_PAYMENT: ProposalKind.RETRY_PAYMENT,
}
# Stored with a proposal confirmed on the confirmation page.
PAGE_CHANNEL = "mcp_elicitation"


class Engine:
    """Answers requests; holds no billing rule of its own."""

    def __init__(
        self,
        settings: EdgeSettings,
        pool: asyncpg.Pool,
        peers: Peers,
        limits: ratelimit.TurnLimits | None = None,
    ) -> None:
        self._settings = settings
        self._limits = limits or ratelimit.TurnLimits.from_settings(settings)
        self._pool = pool
        self._peers = peers
        keys = settings.secrets_encryption_keys.get_secret_value()
        self._secret_box = SecretBox(keys) if keys else None

    # ----- the turn -----

    async def handle(self, request: Request) -> Reply:
        """Answers one message: verifies, claims the conversation, stores the redacted text,
        dispatches, stores the reply.

        Verification comes first: a conversation belongs to the first verified contact that
        writes in it, and a turn from anyone else (another contact, or an unverified visitor
        once it has an owner) is refused before anything is stored or any proposal touched.
        """
        text = redaction.redact(request.text)
        now = datetime.now(UTC)
        zone = self._settings.workspace_timezone
        parsed = request.parsed or intents.parse(text, now.astimezone(ZoneInfo(zone)))
        verified = await self._verify(request)
        if verified is not None:
            # Limited on proven identity only; RateLimited before anything is stored or answered.
            self._limits.check(
                request.workspace_id, verified[0].contact_id, verified[0].stripe_customer_id
            )
        contact_id = verified[0].contact_id if verified is not None else ""
        async with self._pool.acquire() as connection, connection.transaction():
            owner = await storage.claim_conversation(
                connection,
                request.workspace_id,
                request.conversation_id,
                request.channel,
                contact_id,
            )
            if owner and owner != contact_id:
                raise ConversationNotOwned(request.conversation_id)
            await storage.append_message(
                connection,
                request.workspace_id,
                request.conversation_id,
                "visitor",
                text,
                parsed.intent.value,
                verified=verified is not None,
            )
        if verified is None:
            reply = await self._unverified(request, parsed, now)
        else:
            contact, assertion, link = verified
            context = Context(request, contact, assertion, now, zone)
            try:
                reply = await self._dispatch(context, parsed, text)
            except StripeUnavailable:
                reply = await self._handoff(
                    context,
                    reason="STRIPE_UNAVAILABLE",
                    note="The billing gateway could not reach Stripe in time.",
                    text=STRIPE_DOWN_REPLY,
                    with_subscription=False,
                )
            except NotLinked:
                if link == "unavailable":
                    reply = await self._handoff(
                        context,
                        reason="STRIPE_UNAVAILABLE",
                        note="Stripe could not be reached to find the visitor's customer.",
                        text=STRIPE_DOWN_REPLY,
                        with_subscription=False,
                    )
                else:
                    reply = Reply(
                        "I couldn't find a billing account under "
                        f"{contact.email or contact.claimed_email or 'your email'}, "
                        "so I can't look that up. Want me to get a human?",
                        status="not_found",
                    )
            except NotFound as missing:
                reply = Reply(f"I couldn't find {missing} on your account.", status="not_found")
            if redaction.contains_card(request.text):
                reply.text = (
                    "For your security I removed the card number from your message; please "
                    "never type card details in chat. " + reply.text
                )
        reply.intent = reply.intent or parsed.intent.value
        async with self._pool.acquire() as connection:
            await storage.append_message(
                connection,
                request.workspace_id,
                request.conversation_id,
                "bot",
                redaction.redact(reply.text),
                reply.intent,
            )
        return reply

    async def _verify(self, request: Request) -> tuple[ipb.Contact, str, str] | None:
        """The verified contact and its assertion, bound to its Stripe customer when identity
        names a signed fact to find it by (a signed email, or the workspace's metadata key
        with the verified user id); None for a visitor with no or a bad identity. An email the
        visitor merely typed is never searched for."""
        visitor = request.visitor
        if not visitor.presented:
            return None
        verify_request = ipb.VerifyVisitorRequest(
            workspace_id=request.workspace_id,
            user_id=visitor.user_id,
            email=visitor.email,
            user_hash=visitor.user_hash,
            token=visitor.token,
        )
        try:
            answer = await self._peers.identity.VerifyVisitor(
                verify_request, timeout=self._peers.timeout()
            )
        except grpc.aio.AioRpcError as error:
            logger.info(
                "visitor not verified",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )
            return None
        contact = answer.contact
        link = "linked" if contact.stripe_customer_id else "none"
        lookup = answer.customer_lookup
        if not contact.stripe_customer_id and (lookup.email or lookup.metadata_key):
            link = await self._link_customer(request.workspace_id, contact, lookup)
            if link == "linked":
                try:
                    answer = await self._peers.identity.VerifyVisitor(
                        verify_request, timeout=self._peers.timeout()
                    )
                except grpc.aio.AioRpcError:
                    return None
        return answer.contact, answer.identity_assertion, link

    async def _link_customer(
        self, workspace_id: str, contact: ipb.Contact, lookup: ipb.CustomerLookup
    ) -> str:
        """ "linked", "none" (no customer carries the signed fact) or "unavailable". Searches
        by the signed email first, then by the metadata key naming the verified user id;
        identity binds only the candidate matching what it knows was signed."""
        searches: list[tuple[str, bpb.FindCustomersRequest]] = []
        if lookup.email:
            searches.append(
                ("email", bpb.FindCustomersRequest(workspace_id=workspace_id, email=lookup.email))
            )
        if lookup.metadata_key and lookup.metadata_value:
            searches.append(
                (
                    "metadata",
                    bpb.FindCustomersRequest(
                        workspace_id=workspace_id,
                        metadata=bpb.MetadataQuery(
                            key=lookup.metadata_key, value=lookup.metadata_value
                        ),
                    ),
                )
            )
        try:
            for kind, search in searches:
                found = await self._peers.billing.FindCustomers(
                    search, timeout=self._peers.billing_timeout()
                )
                if not found.customers:
                    continue
                candidates = [
                    ipb.CustomerCandidate(
                        stripe_customer_id=customer.stripe_customer_id,
                        email=customer.email,
                        metadata_value=customer.metadata_value,
                    )
                    for customer in found.customers
                ]
                # The same candidates give the same key, so a retried turn is one link.
                fingerprint = hashlib.sha256(
                    ",".join(sorted(c.stripe_customer_id for c in candidates)).encode()
                ).hexdigest()[:16]
                link = ipb.LinkCustomerRequest(
                    workspace_id=workspace_id,
                    contact_id=contact.contact_id,
                    idempotency_key=f"edge:link:{contact.contact_id}:{kind}:{fingerprint}",
                )
                if kind == "email":
                    link.email_match.CopyFrom(ipb.EmailMatch(candidates=candidates))
                else:
                    link.metadata_match.CopyFrom(
                        ipb.MetadataMatch(metadata_key=lookup.metadata_key, candidates=candidates)
                    )
                await self._peers.identity.LinkCustomer(link, timeout=self._peers.timeout())
                return "linked"
            return "none"
        except grpc.aio.AioRpcError as error:
            logger.info(
                "customer not linked",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )
            return "unavailable" if is_unavailable(error) else "none"

    async def _customer_email(self, context: Context) -> str:
        """The bound Stripe customer's own email: where to send when the visitor signed no
        email (the email they typed is never a recipient). Empty when unknown."""
        if not context.contact.stripe_customer_id:
            return ""
        try:
            found = await self._peers.billing.FindCustomers(
                bpb.FindCustomersRequest(
                    workspace_id=context.workspace_id,
                    stripe_customer_id=context.contact.stripe_customer_id,
                ),
                timeout=self._peers.billing_timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.info("customer email not found", extra={"code": error.code().name})
            return ""
        return next((c.email for c in found.customers if c.email), "")

    async def _unverified(self, request: Request, parsed: Parsed, now: datetime) -> Reply:
        """No data for an unproven visitor: billing questions go to a human."""
        if parsed.intent not in intents.BILLING_INTENTS and parsed.intent is not Intent.HUMAN:
            return Reply(
                "I can help with billing once you're signed in to your account. " + _CAPABILITIES,
                status="ok",
            )
        transcript = await self._transcript(request)
        escalation_id, email = await self._unverified_escalation(request, transcript)
        if email:
            await self._notify_handoff(
                request.workspace_id,
                escalation_id,
                reason="IDENTITY_UNVERIFIED",
                summary="An unverified visitor asked about billing.",
                transcript=transcript,
            )
        return Reply(
            "I can't discuss billing details until I can confirm who you are. I've asked "
            "someone from our team to help you."
            + (f" Your reference is {escalation_id}." if escalation_id else ""),
            actions=[Action("handoff", "Talk to a human", {"escalation_id": escalation_id})],
            escalated=True,
            escalation_id=escalation_id,
            status="handoff",
        )

    async def _unverified_escalation(self, request: Request, transcript: str) -> tuple[str, bool]:
        """(escalation id, whether to email the agents) for an unverified hand-off: the
        conversation's open escalation when it has one (no email: the agents know), else a
        new one, emailed within the workspace's hourly limit for unverified hand-offs."""
        workspace_id, conversation_id = request.workspace_id, request.conversation_id
        async with self._pool.acquire() as connection, connection.transaction():
            if not await storage.lock_unverified_conversation(
                connection, workspace_id, conversation_id
            ):
                # Another turn of this conversation is handing off right now: that one hand-off
                # serves both (waiting would hold a connection per flooding request).
                return "", False
            previous = await storage.newest_unverified_escalation(
                connection, workspace_id, conversation_id
            )
            if previous is not None and await self._escalation_open(workspace_id, previous):
                return previous, False
            escalation_id = await self._open_escalation(
                workspace_id,
                "",
                reason="IDENTITY_UNVERIFIED",
                context=ppb.EscalationContext(
                    conversation_id=conversation_id,
                    transcript_summary=transcript,
                    note="The visitor's identity could not be verified; no billing data was "
                    "shared.",
                ),
            )
            if not escalation_id:
                # Policy did not answer: nothing to point the agents at; the next turn retries.
                return "", False
            email = await storage.record_unverified_escalation(
                connection,
                workspace_id,
                conversation_id,
                escalation_id,
                self._limits.unverified_handoff_emails_per_hour,
            )
        return escalation_id, email

    async def _escalation_open(self, workspace_id: str, escalation_id: str) -> bool:
        """Whether an escalation still waits on an agent (when policy cannot say, it is
        taken as open: a flood must not open one per turn while policy is slow)."""
        try:
            found = await self._peers.policy.GetEscalation(
                ppb.GetEscalationRequest(workspace_id=workspace_id, escalation_id=escalation_id),
                timeout=self._peers.timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.warning(
                "escalation state unknown",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )
            return bool(error.code() != grpc.StatusCode.NOT_FOUND)
        return bool(found.escalation.state == ppb.ESCALATION_STATE_OPEN)

    # ----- dispatch -----

    async def _dispatch(self, context: Context, parsed: Parsed, text: str) -> Reply:
        intent = parsed.intent
        request = context.request
        if request.quote_answer is not None:
            answer = request.quote_answer
            if not answer.confirm:
                return await self._decline(context, answer.quote_id)
            return await self._confirm(
                context,
                ppb.CONFIRMATION_CHANNEL_CONFIRM_ENDPOINT,
                proposal_id=answer.quote_id,
                terms_hash=answer.terms_hash,
            )
        if intent is Intent.YES:
            channel = _YES_CHANNELS.get(request.channel)
            if channel is None:
                return Reply("Only the customer can confirm, in their own chat.", status="denied")
            return await self._confirm(context, channel)
        if intent is Intent.NO:
            return await self._decline(context)
        if request.runs_confirmed_quote and intent in _KIND_OF_INTENT:
            confirmed_on_page = await self._confirmed_on_page(context, _KIND_OF_INTENT[intent])
            if confirmed_on_page is not None:
                return confirmed_on_page
        if intent in (Intent.STATUS, Intent.RENEWAL, Intent.NEXT_INVOICE, Intent.CURRENT_PLAN):
            return await self._status(context, intent)
        if intent is Intent.INVOICES:
            return await self._invoices(context, parsed.period)
        if intent is Intent.EMAIL_INVOICES:
            return await self._email_invoices(context, parsed.period)
        if intent is Intent.DUPLICATE_CHARGE:
            return await self._duplicates(context)
        if intent is Intent.REFUND:
            return await self._refund(context, parsed)
        if intent is Intent.LIST_PLANS:
            return await self._list_plans(context)
        if intent is Intent.CHANGE_PLAN:
            return await self._change_plan(context, parsed)
        if intent is Intent.CANCEL:
            return await self._propose_subscription_action(context, ProposalKind.CANCEL)
        if intent is Intent.PAUSE:
            return await self._propose_subscription_action(context, ProposalKind.PAUSE)
        if intent is Intent.UNDO:
            return await self._undo(context)
        if intent is Intent.RETRY_PAYMENT:
            return await self._retry(context, parsed.invoice_id)
        if intent is Intent.UPDATE_CARD:
            return await self._update_card(context)
        if intent is Intent.HUMAN:
            return await self._handoff(
                context,
                reason="VISITOR_ASKED",
                note="The visitor asked for a human.",
                text="Of course. I've asked someone from our team to pick this up",
            )
        if intent is Intent.WHATSAPP_OPT_IN:
            return await self._whatsapp_opt_in(context, text)
        if intent is Intent.GREETING:
            return Reply("Hi! " + _CAPABILITIES)
        return Reply(_CAPABILITIES)

    # ----- reads -----

    async def _subscription(self, context: Context) -> bpb.GetSubscriptionResponse:
        answer: bpb.GetSubscriptionResponse = await self._billing_call(
            "GetSubscription",
            bpb.GetSubscriptionRequest(
                workspace_id=context.workspace_id, identity_assertion=context.assertion
            ),
        )
        return answer

    async def _billing_call(self, method: str, request: Any) -> Any:
        """Calls the gateway; unavailability becomes StripeUnavailable, NOT_FOUND NotFound."""
        try:
            return await getattr(self._peers.billing, method)(
                request, timeout=self._peers.billing_timeout()
            )
        except grpc.aio.AioRpcError as error:
            if is_unavailable(error):
                logger.warning(
                    "billing unavailable",
                    extra={"rpc": method, "code": error.code().name, "reason": error_reason(error)},
                )
                raise StripeUnavailable(method) from error
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound("that") from error
            if error_reason(error) == "CUSTOMER_NOT_LINKED":
                raise NotLinked() from error
            raise

    def _date(self, context: Context, stamp: timestamp_pb2.Timestamp) -> str:
        return formatting.date(_dt(stamp), context.zone)

    def _short(self, context: Context, stamp: timestamp_pb2.Timestamp) -> str:
        return formatting.short_date(_dt(stamp), context.zone, context.now)

    def _plan_text(self, plan: bpb.Plan) -> str:
        per = formatting.interval(plan.interval, plan.interval_count)
        return f"{plan.name} plan ({_money(plan.amount)}{per})"

    async def _status(self, context: Context, focus: Intent) -> Reply:
        answer = await self._subscription(context)
        if not answer.HasField("subscription"):
            return Reply(
                "I don't see a subscription on your account. Want to see our plans?",
                data={"subscription": None},
            )
        sub = answer.subscription
        parts: list[str] = []
        actions: list[Action] = []
        status = sub.status
        if status == bpb.SUBSCRIPTION_STATUS_TRIALING and sub.HasField("trial_end"):
            parts.append(
                f"You're on a trial of the {self._plan_text(sub.plan)} until "
                f"{self._date(context, sub.trial_end)}."
            )
        elif status == bpb.SUBSCRIPTION_STATUS_CANCELED:
            parts.append(f"Your {sub.plan.name} subscription has ended.")
        else:
            parts.append(f"You're on the {self._plan_text(sub.plan)}.")
        if sub.paused:
            parts.append("Payments are paused.")
        if sub.HasField("scheduled_cancellation") and sub.scheduled_cancellation.operation_id:
            parts.append(
                "Your cancellation is scheduled for "
                f"{self._date(context, sub.scheduled_cancellation.run_at)}; "
                'say "undo" to keep your plan.'
            )
        elif sub.cancel_at_period_end and sub.HasField("current_period_end"):
            parts.append(f"It ends on {self._date(context, sub.current_period_end)}.")
        elif status != bpb.SUBSCRIPTION_STATUS_CANCELED and sub.HasField("current_period_end"):
            next_amount = (
                f" ({_money(sub.next_invoice_amount)})"
                if sub.HasField("next_invoice_amount") and focus is Intent.NEXT_INVOICE
                else ""
            )
            parts.append(
                f"Next billing date: {self._date(context, sub.current_period_end)}{next_amount}."
            )
            if focus is Intent.NEXT_INVOICE and not next_amount:
                parts.append(f"Your next invoice should be {_money(sub.plan.amount)}.")
        latest = sub.latest_invoice
        if latest.invoice_id:
            if latest.status == "paid":
                parts.append(
                    f"Last invoice ({self._short(context, latest.created_at)}): "
                    f"{_money(latest.amount_paid)} paid."
                )
            elif latest.status == "open":
                parts.append(
                    f"Your last invoice ({self._short(context, latest.created_at)}) of "
                    f"{_money(latest.amount_due)} is unpaid."
                )
                actions += [
                    Action("confirm", "Retry payment", {"text": "retry now"}),
                    Action("confirm", "Update card", {"text": "update my card"}),
                ]
        if status == bpb.SUBSCRIPTION_STATUS_PAST_DUE:
            parts.append(
                "Want me to retry the payment now, or send you a link to update your card?"
            )
        else:
            parts.append("Want to see your invoice history or change plans?")
        return Reply(" ".join(parts), actions=actions, data={"subscription": _sub_json(sub)})

    async def _invoices(self, context: Context, period: Period | None) -> Reply:
        period = period or self._default_period(context)
        invoices = await self._list_invoices(context, period)
        if not invoices:
            return Reply(f"I found no invoices for {period.label}.", data={"invoices": []})
        lines = [f"Here are your invoices for {period.label}:"]
        actions = []
        for invoice in invoices:
            paid = invoice.status == "paid"
            amount = _money(invoice.amount_paid if paid else invoice.amount_due)
            link = invoice.invoice_pdf_url or invoice.hosted_invoice_url
            lines.append(
                f"- {self._date(context, invoice.created_at)}: {amount} {invoice.status} ({link})"
            )
            actions.append(
                Action("link", f"Invoice {self._short(context, invoice.created_at)}", {"url": link})
            )
        lines.append("Want me to email them to you as one bundle?")
        quote = await self._store_proposal(
            context,
            ProposalKind.EMAIL_INVOICES,
            {"period": period.label, "invoices": [_invoice_json(i) for i in invoices]},
            f"email your invoices for {period.label}",
        )
        actions.append(
            Action(
                "confirm",
                "Email them to me",
                {"text": "yes", "quote_id": quote.quote_id, "terms_hash": quote.terms_hash},
            )
        )
        return Reply(
            "\n".join(lines),
            actions=actions,
            data={"invoices": [_invoice_json(i) for i in invoices], "quote": quote.as_json()},
        )

    def _default_period(self, context: Context) -> Period:
        local = context.now.astimezone(ZoneInfo(context.zone))
        found = intents.parse_period("last 3 months", local)
        assert found is not None
        return found

    async def _list_invoices(self, context: Context, period: Period) -> list[bpb.InvoiceSummary]:
        answer = await self._billing_call(
            "ListInvoices",
            bpb.ListInvoicesRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                created_after=_timestamp(period.start),
                created_before=_timestamp(period.end),
                page_size=100,
            ),
        )
        return list(answer.invoices)

    async def _email_invoices(self, context: Context, period: Period | None) -> Reply:
        period = period or self._default_period(context)
        invoices = await self._list_invoices(context, period)
        if not invoices:
            return Reply(f"I found no invoices for {period.label} to email.")
        return await self._send_bundle(
            context, period.label, [_invoice_json(i) for i in invoices], ids.new_id("bundle")
        )

    async def _send_bundle(
        self, context: Context, period_label: str, invoices: list[dict[str, Any]], key: str
    ) -> Reply:
        # Only an email the workspace signed, or the bound customer's own email in Stripe.
        recipient = context.contact.email or await self._customer_email(context)
        if not recipient:
            return Reply(
                "I have no verified email address to send your invoices to; the links above "
                "work meanwhile."
            )
        try:
            await self._peers.notifier.Send(
                npb.SendRequest(
                    workspace_id=context.workspace_id,
                    recipient=npb.Recipient(contact_id=context.contact.contact_id, email=recipient),
                    template=npb.TEMPLATE_INVOICE_BUNDLE,
                    channel=npb.CHANNEL_EMAIL,
                    variables={
                        "period": period_label,
                        "invoice_links": "\n".join(
                            f"{i['number'] or i['invoice_id']}: {i['pdf_url']}" for i in invoices
                        ),
                    },
                    attachments=[
                        npb.Attachment(
                            filename=f"{i['number'] or i['invoice_id']}.pdf",
                            content_type="application/pdf",
                            url=i["pdf_url"],
                        )
                        for i in invoices
                        if i["pdf_url"]
                    ],
                    dedup_key=key,
                ),
                timeout=self._peers.timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("invoice bundle not queued", extra={"code": error.code().name})
            return Reply("I couldn't send the email just now; the links above work meanwhile.")
        return Reply(
            f"Done: I've emailed your invoices for {period_label} to {recipient}.",
            data={"emailed": len(invoices)},
        )

    async def _list_plans(self, context: Context) -> Reply:
        plans = await self._plans(context, "")
        current = ""
        try:
            answer = await self._subscription(context)
            current = answer.subscription.plan.price_id if answer.HasField("subscription") else ""
        except NotFound:
            current = ""
        described = [
            f"{plan.name} {_money(plan.amount)}"
            f"{formatting.interval(plan.interval, plan.interval_count)}"
            + (" (yours)" if plan.price_id == current else "")
            for plan in plans
        ]
        return Reply(
            f"Our plans: {formatting.listing(described)}. Want to switch?",
            data={"plans": [_plan_json(p) for p in plans]},
        )

    async def _plans(self, context: Context, currency: str) -> list[bpb.Plan]:
        answer = await self._billing_call(
            "ListPlans", bpb.ListPlansRequest(workspace_id=context.workspace_id, currency=currency)
        )
        return list(answer.plans)

    # ----- money actions -----

    async def _duplicates(self, context: Context) -> Reply:
        answer = await self._billing_call(
            "FindDuplicateCharges",
            bpb.FindDuplicateChargesRequest(
                workspace_id=context.workspace_id, identity_assertion=context.assertion
            ),
        )
        if not answer.pairs:
            return Reply(
                "I checked your recent charges and don't see one taken twice. If a charge "
                "looks wrong, tell me which one and I'll look into it.",
                data={"pairs": []},
            )
        pair = answer.pairs[0]
        duplicate = pair.duplicate
        remaining = duplicate.amount.amount_minor - duplicate.amount_refunded.amount_minor
        intro = (
            f"You were charged {_money(duplicate.amount)} twice on "
            f"{self._date(context, duplicate.created_at)}; the second charge is a duplicate."
        )
        return await self._propose_refund(
            context, duplicate, remaining, intro, bpb.REFUND_REASON_DUPLICATE
        )

    async def _charges(self, context: Context) -> list[bpb.Charge]:
        answer = await self._billing_call(
            "ListCharges",
            bpb.ListChargesRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                page_size=50,
            ),
        )
        return list(answer.charges)

    async def _refund(self, context: Context, parsed: Parsed) -> Reply:
        charges = await self._charges(context)
        refundable = [c for c in charges if c.status == "succeeded" and not c.refunded]
        if parsed.charge_id:
            chosen = next((c for c in charges if c.charge_id == parsed.charge_id), None)
            if chosen is None:
                raise NotFound("that charge")
            if chosen.refunded:
                return Reply("That charge was already refunded in full.", status="denied")
        elif refundable:
            chosen = refundable[0]
        else:
            return Reply("I don't see a charge on your account that could be refunded.")
        remaining = chosen.amount.amount_minor - chosen.amount_refunded.amount_minor
        amount = remaining
        if parsed.amount is not None:
            if parsed.amount.currency and parsed.amount.currency != chosen.amount.currency:
                return Reply(
                    f"That charge was in {chosen.amount.currency.upper()}, so I can't refund it "
                    f"in {parsed.amount.currency.upper()}."
                )
            # Minor units of the charge's currency, known only now (¥50 is 50, $50 is 5,000).
            asked = parsed.amount.minor_units(chosen.amount.currency)
            if asked is None:
                return Reply(
                    f"That amount is finer than the smallest unit of "
                    f"{chosen.amount.currency.upper()} "
                    f"({formatting.money(1, chosen.amount.currency)})."
                )
            amount = asked
            if amount > remaining:
                return Reply(
                    f"The charge on {self._date(context, chosen.created_at)} was "
                    f"{_money(chosen.amount)}; I can refund at most "
                    f"{formatting.money(remaining, chosen.amount.currency)} of it.",
                    status="denied",
                )
        intro = (
            f"Your charge on {self._date(context, chosen.created_at)} was {_money(chosen.amount)}"
            + (
                f" ({chosen.card_brand.title()} •••• {chosen.card_last4})"
                if chosen.card_last4
                else ""
            )
            + "."
        )
        return await self._propose_refund(
            context, chosen, amount, intro, bpb.REFUND_REASON_REQUESTED_BY_CUSTOMER
        )

    async def _propose_refund(
        self,
        context: Context,
        charge: bpb.Charge,
        amount_minor: int,
        intro: str,
        reason: int,
    ) -> Reply:
        amount = cpb.Money(amount_minor=amount_minor, currency=charge.amount.currency)
        details = {
            "charge_id": charge.charge_id,
            "amount_minor": amount_minor,
            "currency": charge.amount.currency,
            "charge_created_at": _dt(charge.created_at).isoformat(),
            "reason": int(reason),
            "card": f"{charge.card_brand.title()} •••• {charge.card_last4}"
            if charge.card_last4
            else "",
        }
        return await self._ask_policy(
            context,
            ProposalKind.REFUND,
            details,
            f"{intro} I can refund {_money(amount)} to your original payment method.",
            f"refund {_money(amount)}",
        )

    async def _change_plan(self, context: Context, parsed: Parsed) -> Reply:
        answer = await self._subscription(context)
        if not answer.HasField("subscription"):
            return Reply("You don't have a subscription to change. Want to see our plans?")
        sub = answer.subscription
        plans = await self._plans(context, sub.plan.amount.currency)
        if not parsed.plan:
            names = formatting.listing([p.name for p in plans])
            return Reply(
                f"Which plan would you like: {names}?",
                data={"plans": [_plan_json(p) for p in plans]},
            )
        target = next(
            (
                p
                for p in plans
                if parsed.plan in (p.name.lower(), p.tier.lower(), p.price_id.lower())
            ),
            None,
        )
        if target is None:
            names = formatting.listing([p.name for p in plans])
            return Reply(
                f"I don't know a plan called {parsed.plan.title()}. Our plans are {names}."
            )
        if target.price_id == sub.plan.price_id:
            return Reply(f"You're already on the {self._plan_text(sub.plan)}.")
        if not sub.plan_change_in_place:
            return Reply(
                "Your subscription is paid by UPI under an Indian eMandate, which can't be "
                f"changed in place. To move to {target.name}, cancel your current plan and "
                f"subscribe to {target.name} again; the new mandate is set up when you "
                "subscribe. Want me to cancel the current plan?",
                data={"plan_change_in_place": False},
                status="denied",
            )
        try:
            preview = await self._billing_call(
                "PreviewPlanChange",
                bpb.PreviewPlanChangeRequest(
                    workspace_id=context.workspace_id,
                    identity_assertion=context.assertion,
                    subscription_id=sub.subscription_id,
                    target_price_id=target.price_id,
                ),
            )
        except grpc.aio.AioRpcError as error:
            if error_reason(error) == "PLAN_CHANGE_REQUIRES_RESUBSCRIBE":
                return Reply(
                    f"Your payment method can't be changed in place; to move to {target.name}, "
                    "cancel and subscribe again.",
                    status="denied",
                )
            raise
        difference = preview.price_difference
        more_or_less = "more" if difference.amount_minor >= 0 else "less"
        diff_text = formatting.money(abs(difference.amount_minor), difference.currency)
        per = formatting.interval(target.interval, target.interval_count).lstrip("/")
        text = (
            f"Moving from {self._plan_text(preview.current_plan)} to the "
            f"{self._plan_text(preview.target_plan)} costs {diff_text} {more_or_less} per {per}. "
            f"It takes effect right away ({self._date(context, preview.effective_at)})"
        )
        if preview.HasField("proration_amount") and preview.proration_amount.amount_minor:
            proration = preview.proration_amount
            verb = "added to" if proration.amount_minor > 0 else "credited on"
            text += (
                f"; a prorated {formatting.money(abs(proration.amount_minor), proration.currency)}"
                f" is {verb} your next invoice on {self._date(context, preview.next_invoice_at)}"
            )
        text += "."
        if preview.features_gained:
            text += f" You'd unlock {formatting.listing(list(preview.features_gained))}."
        details = {
            "subscription_id": sub.subscription_id,
            "target_price_id": target.price_id,
            "target_name": target.name,
            "old_name": sub.plan.name,
            "features_gained": list(preview.features_gained),
        }
        return await self._ask_policy(
            context, ProposalKind.CHANGE_PLAN, details, text, f"change to {target.name}"
        )

    async def _propose_subscription_action(self, context: Context, kind: ProposalKind) -> Reply:
        """Cancel and pause: policy is asked first, then the person confirms the quote."""
        answer = await self._subscription(context)
        if (
            not answer.HasField("subscription")
            or answer.subscription.status == bpb.SUBSCRIPTION_STATUS_CANCELED
        ):
            return Reply("You don't have an active subscription.")
        sub = answer.subscription
        if kind is ProposalKind.CANCEL:
            if sub.HasField("scheduled_cancellation") and sub.scheduled_cancellation.operation_id:
                return Reply(
                    "Your cancellation is already scheduled for "
                    f"{self._date(context, sub.scheduled_cancellation.run_at)}."
                )
            text = (
                f"I can cancel your {sub.plan.name} subscription. You'll have a short grace "
                'period to change your mind (just say "undo").'
            )
        else:
            text = f"I can pause payments on your {sub.plan.name} subscription until you resume."
        short = (
            "cancel your subscription" if kind is ProposalKind.CANCEL else "pause your subscription"
        )
        return await self._ask_policy(
            context,
            kind,
            {"subscription_id": sub.subscription_id, "plan": sub.plan.name},
            text,
            short,
        )

    async def _retry(self, context: Context, invoice_id: str) -> Reply:
        answer = await self._subscription(context)
        latest = answer.subscription.latest_invoice if answer.HasField("subscription") else None
        if not invoice_id:
            if latest is None or latest.status != "open":
                return Reply("You don't have an unpaid invoice; nothing to retry.")
            invoice_id = latest.invoice_id
        amount = (
            _money(latest.amount_due)
            if latest is not None and latest.invoice_id == invoice_id
            else ""
        )
        return await self._ask_policy(
            context,
            ProposalKind.RETRY_PAYMENT,
            {"invoice_id": invoice_id, "amount": amount},
            f"I can retry the payment of your unpaid invoice{f' ({amount})' if amount else ''}.",
            "retry the payment",
        )

    async def _undo(self, context: Context) -> Reply:
        answer = await self._subscription(context)
        scheduled = (
            answer.subscription.scheduled_cancellation if answer.HasField("subscription") else None
        )
        operation_id = scheduled.operation_id if scheduled is not None else ""
        if not operation_id:
            if (
                answer.HasField("subscription")
                and answer.subscription.status == bpb.SUBSCRIPTION_STATUS_CANCELED
            ):
                return Reply(
                    "Your subscription was already canceled, so there's nothing to undo. You "
                    "can subscribe again any time.",
                    status="denied",
                )
            return Reply("There's no cancellation to undo; your plan continues as it is.")
        result = await self._billing_call(
            "UndoCancellation",
            bpb.UndoCancellationRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                operation_id=operation_id,
                idempotency_key=f"edge:undo:{operation_id}",
            ),
        )
        if result.undone:
            return Reply(
                "Done: your cancellation is undone and your "
                f"{answer.subscription.plan.name} plan continues.",
                data={"undone": True},
            )
        return Reply(
            "Too late to undo: the grace period had ended and the subscription is canceled. "
            "You can subscribe again any time.",
            data={"undone": False},
            status="denied",
        )

    async def _update_card(self, context: Context) -> Reply:
        try:
            link = await self._billing_call(
                "CreatePaymentMethodUpdateLink",
                bpb.CreatePaymentMethodUpdateLinkRequest(
                    workspace_id=context.workspace_id,
                    identity_assertion=context.assertion,
                    return_url=self._settings.card_update_return_url,
                    idempotency_key=ids.new_id("edge_card"),
                ),
            )
        except grpc.aio.AioRpcError as error:
            logger.warning("no card link", extra={"reason": error_reason(error)})
            return Reply("I couldn't create a card-update link just now. Want me to get a human?")
        return Reply(
            f"Here's a secure link to update your card: {link.url}",
            actions=[Action("link", "Update card", {"url": link.url})],
            data={"url": link.url},
        )

    async def _whatsapp_opt_in(self, context: Context, text: str) -> Reply:
        """Starts linking a WhatsApp number: nothing is linked and no opt-in is recorded until
        a signed message from that number brings back the code shown here (see
        edge.whatsapp_linking)."""
        match = _PHONE.search(text)
        visitor = context.request.visitor
        if match is None or self._secret_box is None or not visitor.user_hash:
            return Reply("I can't set up WhatsApp messages from here, sorry.")
        number = "+" + re.sub(r"\D", "", match.group(0))
        challenge = await whatsapp_linking.start(
            self._pool,
            self._settings,
            self._secret_box,
            workspace_id=context.workspace_id,
            contact_id=context.contact.contact_id,
            user_id=visitor.user_id,
            email=visitor.email,
            user_hash=visitor.user_hash,
            number=number,
            now=context.now,
        )
        if challenge.started is whatsapp_linking.Started.ALREADY_LINKED:
            return Reply(
                f"WhatsApp {number} is already linked to your account; billing messages come "
                "there.",
                data={"whatsapp_number": number, "linked": True},
            )
        if challenge.started is whatsapp_linking.Started.TOO_MANY:
            return Reply(
                "You've asked for several WhatsApp link codes in the last hour; please try "
                "again later.",
                data={"whatsapp_number": number, "linked": False},
                status="denied",
            )
        business = self._settings.whatsapp_business_number
        minutes = max(1, round(self._settings.whatsapp_link_code_ttl_seconds / 60))
        actions = []
        if business:
            actions.append(
                Action(
                    "link",
                    "Open WhatsApp",
                    {"url": whatsapp_linking.wa_me_url(business, challenge.code)},
                )
            )
        return Reply(
            f"To link WhatsApp {number} to your account, send this message from that WhatsApp "
            f"number to {'our WhatsApp number ' + business if business else 'our WhatsApp number'}"
            f": LINK {challenge.code} (the code works for {minutes} minutes). Until then, "
            "nothing about your account goes to that number.",
            actions=actions,
            data={
                "whatsapp_number": number,
                "linked": False,
                "link_message": f"LINK {challenge.code}",
                "expires_at": challenge.expires_at.isoformat() if challenge.expires_at else "",
            },
        )

    def open_whatsapp_credential(self, link: storage.WhatsAppLink) -> str:
        """The user_hash a proven WhatsApp number was linked with."""
        if self._secret_box is None:
            return ""
        return self._secret_box.open(
            link.credential,
            whatsapp_linking.credential_binding(link.workspace_id, link.whatsapp_number),
        ).decode()

    # ----- policy, proposals, confirmation -----

    def _details_pb(
        self, context: Context, kind: ProposalKind, details: Mapping[str, Any]
    ) -> tuple[cpb.BillingAction.ValueType, ppb.ActionDetails]:
        customer = context.contact.stripe_customer_id
        if kind is ProposalKind.REFUND:
            return cpb.BILLING_ACTION_REFUND, ppb.ActionDetails(
                stripe_customer_id=customer,
                charge_id=details["charge_id"],
                amount=cpb.Money(
                    amount_minor=details["amount_minor"], currency=details["currency"]
                ),
                charge_created_at=_timestamp(datetime.fromisoformat(details["charge_created_at"])),
            )
        if kind is ProposalKind.CHANGE_PLAN:
            return cpb.BILLING_ACTION_CHANGE_PLAN, ppb.ActionDetails(
                stripe_customer_id=customer,
                subscription_id=details["subscription_id"],
                target_price_id=details["target_price_id"],
            )
        if kind is ProposalKind.CANCEL:
            return cpb.BILLING_ACTION_CANCEL_SUBSCRIPTION, ppb.ActionDetails(
                stripe_customer_id=customer, subscription_id=details["subscription_id"]
            )
        if kind is ProposalKind.PAUSE:
            return cpb.BILLING_ACTION_PAUSE_SUBSCRIPTION, ppb.ActionDetails(
                stripe_customer_id=customer, subscription_id=details["subscription_id"]
            )
        if kind is ProposalKind.RETRY_PAYMENT:
            return cpb.BILLING_ACTION_RETRY_PAYMENT, ppb.ActionDetails(
                stripe_customer_id=customer, invoice_id=details["invoice_id"]
            )
        raise ValueError(f"{kind} is not a billing action")

    async def _authorize(
        self,
        context: Context,
        kind: ProposalKind,
        details: Mapping[str, Any],
        confirmation: ppb.Confirmation | None,
        key: str,
        note: str,
    ) -> ppb.AuthorizeResponse:
        action, details_pb = self._details_pb(context, kind, details)
        escalation_context = ppb.EscalationContext(
            conversation_id=context.conversation_id,
            transcript_summary=await self._transcript(context.request),
            subscription_summary=await self._subscription_summary(context),
            note=note,
        )
        response: ppb.AuthorizeResponse = await self._peers.policy.Authorize(
            ppb.AuthorizeRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                action=action,
                details=details_pb,
                confirmed=confirmation is not None,
                confirmation=confirmation,
                context=escalation_context,
                idempotency_key=key,
            ),
            timeout=self._peers.timeout(),
        )
        return response

    async def _ask_policy(
        self,
        context: Context,
        kind: ProposalKind,
        details: dict[str, Any],
        text: str,
        short: str,
    ) -> Reply:
        """Asks policy before asking the visitor, so a refusal is explained at once; what
        policy would allow is still only quoted: it runs when the person confirms it."""
        proposal_id = ids.new_id("prop")
        # What is refused on a later "yes" is named the same way ("refund $49").
        details["short"] = short
        decision = await self._authorize(
            context,
            kind,
            details,
            None,
            proposals.key(proposal_id, "ask"),
            f"The visitor asked to {short}.",
        )
        if decision.decision in (ppb.DECISION_NEEDS_CONFIRMATION, ppb.DECISION_ALLOW):
            quote = await self._store_proposal(context, kind, details, text, proposal_id)
            return _confirmation_reply(quote, context.conversation_id)
        return await self._refused(context, decision, short)

    async def _store_proposal(
        self,
        context: Context,
        kind: ProposalKind,
        details: dict[str, Any],
        summary: str,
        proposal_id: str = "",
    ) -> Quote:
        """Stores the offer with its quote: a money action's terms are hashed exactly as
        policy will check them when the person confirms."""
        proposal_id = proposal_id or ids.new_id("prop")
        # Whole seconds: the quote's expiry is hashed (and shown) at that precision.
        expires_at = (context.now + timedelta(seconds=self._settings.proposal_ttl_seconds)).replace(
            microsecond=0
        )
        terms_hash = ""
        if kind in proposals.MONEY_KINDS:
            action, details_pb = self._details_pb(context, kind, details)
            terms_hash = quotes.terms_hash(
                workspace_id=context.workspace_id,
                contact_id=context.contact.contact_id,
                action=action,
                details=details_pb.SerializeToString(deterministic=True),
                summary=summary,
                expires_at=expires_at,
            )
        async with self._pool.acquire() as connection:
            await storage.add_proposal(
                connection,
                workspace_id=context.workspace_id,
                conversation_id=context.conversation_id,
                proposal_id=proposal_id,
                contact_id=context.contact.contact_id,
                kind=kind,
                details=details,
                summary=summary,
                expires_at=expires_at,
                terms_hash=terms_hash,
            )
        return Quote(proposal_id, summary, expires_at, terms_hash)

    async def _confirmed_on_page(self, context: Context, kind: ProposalKind) -> Reply | None:
        """A tool call after the person confirmed its quote on the confirmation page runs
        that quote (the page itself holds no proof to act with); None when there is none."""
        async with self._pool.acquire() as connection:
            proposal = await storage.newest_person_confirmed(
                connection, context.workspace_id, context.conversation_id, kind
            )
        if (
            proposal is None
            or proposals.confirmable(proposal, context.contact.contact_id, datetime.now(UTC))
            is not None
        ):
            return None
        return await self._confirm(
            context,
            ppb.CONFIRMATION_CHANNEL_MCP_ELICITATION,
            proposal_id=proposal.proposal_id,
            terms_hash=proposal.terms_hash,
        )

    async def _confirm(
        self,
        context: Context,
        channel: ppb.ConfirmationChannel.ValueType,
        *,
        proposal_id: str = "",
        terms_hash: str = "",
    ) -> Reply:
        """The person's confirmation: a typed "yes" confirms the newest proposal to this
        visitor in this conversation; the confirm endpoint and the confirmation page name
        the quote (and its terms) they confirm."""
        async with self._pool.acquire() as connection, connection.transaction():
            if proposal_id:
                proposal = await storage.proposal_by_id(
                    connection, context.workspace_id, context.conversation_id, proposal_id
                )
            else:
                proposal = await storage.newest_proposal(
                    connection, context.workspace_id, context.conversation_id
                )
            refusal = proposals.confirmable(proposal, context.contact.contact_id, datetime.now(UTC))
            if (
                refusal is None
                and proposal is not None
                and terms_hash
                and terms_hash != proposal.terms_hash
            ):
                refusal = proposals.Refusal.TERMS_CHANGED
            if refusal is None and proposal is not None:
                await storage.set_proposal_state(connection, proposal, ProposalState.CONFIRMING)
        if refusal is proposals.Refusal.EXPIRED:
            return Reply(
                "That offer expired, so I haven't done anything. Ask me again and I'll set it up.",
                status="expired",
            )
        if refusal is not None or proposal is None:
            return Reply(
                "There's nothing waiting for your confirmation right now. " + _CAPABILITIES,
                status="nothing_pending",
            )
        if proposal.kind is ProposalKind.EMAIL_INVOICES:
            reply = await self._send_bundle(
                context,
                proposal.details["period"],
                proposal.details["invoices"],
                proposals.key(proposal.proposal_id, "do"),
            )
            await self._finish(proposal, {"emailed": True})
            return reply
        decision = await self._authorize(
            context,
            proposal.kind,
            proposal.details,
            ppb.Confirmation(
                quote=ppb.Quote(
                    quote_id=proposal.proposal_id,
                    summary=proposal.summary,
                    expires_at=_timestamp(proposal.expires_at),
                    terms_hash=proposal.terms_hash,
                ),
                channel=channel,
                confirmed_at=_timestamp(datetime.now(UTC)),
            ),
            proposals.key(proposal.proposal_id, "confirm"),
            f"The visitor confirmed: {proposal.summary}",
        )
        if decision.decision != ppb.DECISION_ALLOW:
            await self._finish(proposal, {"decision": ppb.Decision.Name(decision.decision)})
            short = str(proposal.details.get("short") or proposal.summary)
            return await self._refused(context, decision, short)
        try:
            return await self._execute(context, proposal, decision.grant)
        except StripeUnavailable:
            # The proposal is spent whatever Stripe did: the gateway's ledger settles the
            # write, the hand-off tells a human, and a later "yes" must not replay it.
            await self._finish(proposal, {"error": "STRIPE_UNAVAILABLE"})
            raise

    async def _finish(
        self,
        proposal: proposals.Proposal,
        result: dict[str, Any],
        state: ProposalState = ProposalState.DONE,
    ) -> None:
        async with self._pool.acquire() as connection:
            await storage.set_proposal_state(connection, proposal, state, result)

    async def _decline(self, context: Context, proposal_id: str = "") -> Reply:
        async with self._pool.acquire() as connection, connection.transaction():
            if proposal_id:
                proposal = await storage.proposal_by_id(
                    connection, context.workspace_id, context.conversation_id, proposal_id
                )
            else:
                proposal = await storage.newest_proposal(
                    connection, context.workspace_id, context.conversation_id
                )
            if (
                proposal is not None
                and proposal.state is ProposalState.PENDING
                and proposal.contact_id == context.contact.contact_id
            ):
                await storage.set_proposal_state(connection, proposal, ProposalState.DECLINED)
                return Reply("OK, I won't do that. Anything else I can help with?")
        return Reply("OK. Anything else I can help with?")

    async def _execute(
        self, context: Context, proposal: proposals.Proposal, grant: ppb.Grant
    ) -> Reply:
        """The billing write under the grant, keyed by the proposal so a retry acts once."""
        details = proposal.details
        key = proposals.key(proposal.proposal_id, "do")
        base: dict[str, Any] = {
            "workspace_id": context.workspace_id,
            "identity_assertion": context.assertion,
            "grant_id": grant.grant_id,
            "idempotency_key": key,
        }
        try:
            if proposal.kind is ProposalKind.REFUND:
                refund = await self._billing_call(
                    "RefundCharge",
                    bpb.RefundChargeRequest(
                        **base,
                        charge_id=details["charge_id"],
                        amount=cpb.Money(
                            amount_minor=details["amount_minor"], currency=details["currency"]
                        ),
                        reason=details["reason"],
                    ),
                )
                await self._finish(proposal, {"refund_id": refund.refund_id})
                card = f" to your {details['card']}" if details.get("card") else ""
                return Reply(
                    f"Done: I've refunded {_money(refund.amount)}{card} "
                    f"(reference {refund.refund_id}). "
                    "It usually shows up within 5 to 10 business days.",
                    data={
                        "refund_id": refund.refund_id,
                        "amount": _money_json(refund.amount),
                        "status": refund.status,
                    },
                )
            if proposal.kind is ProposalKind.CHANGE_PLAN:
                changed = await self._billing_call(
                    "ChangePlan",
                    bpb.ChangePlanRequest(
                        **base,
                        subscription_id=details["subscription_id"],
                        target_price_id=details["target_price_id"],
                        proration_behavior=bpb.PRORATION_BEHAVIOR_CREATE_PRORATIONS,
                    ),
                )
                await self._finish(proposal, {"operation_id": changed.operation.operation_id})
                features = list(changed.features_gained) or list(details.get("features_gained", []))
                sub = changed.subscription
                text = f"Done: you're now on the {self._plan_text(sub.plan)}, effective today."
                if sub.HasField("current_period_end"):
                    text += (
                        " The prorated difference is on your next invoice on "
                        f"{self._date(context, sub.current_period_end)}."
                    )
                if features:
                    text += f" You now have {formatting.listing(features)}."
                return Reply(
                    text, data={"subscription": _sub_json(sub), "features_gained": features}
                )
            if proposal.kind is ProposalKind.CANCEL:
                cancel = await self._billing_call(
                    "CancelSubscription",
                    bpb.CancelSubscriptionRequest(
                        **base, subscription_id=details["subscription_id"]
                    ),
                )
                await self._finish(proposal, {"operation_id": cancel.operation.operation_id})
                run_at = _dt(cancel.operation.run_at)
                local = run_at.astimezone(ZoneInfo(context.zone))
                return Reply(
                    f"Your {details['plan']} subscription will be canceled at {local:%H:%M} on "
                    f"{formatting.date(run_at, context.zone)}. "
                    'Changed your mind? Just say "undo" before then.',
                    actions=[Action("cancel", "Undo", {"text": "undo"})],
                    data={
                        "operation_id": cancel.operation.operation_id,
                        "run_at": run_at.isoformat(),
                    },
                )
            if proposal.kind is ProposalKind.PAUSE:
                paused = await self._billing_call(
                    "PauseSubscription",
                    bpb.PauseSubscriptionRequest(
                        **base, subscription_id=details["subscription_id"]
                    ),
                )
                await self._finish(proposal, {"operation_id": paused.operation.operation_id})
                return Reply(f"Done: payments on your {details['plan']} subscription are paused.")
            if proposal.kind is ProposalKind.RETRY_PAYMENT:
                retried = await self._billing_call(
                    "RetryInvoicePayment",
                    bpb.RetryInvoicePaymentRequest(**base, invoice_id=details["invoice_id"]),
                )
                await self._finish(proposal, {"paid": retried.paid})
                if retried.paid:
                    return Reply(
                        f"The payment of {_money(retried.invoice.amount_paid)} went through; "
                        "you're all set.",
                        data={"paid": True},
                    )
                card_link = await self._update_card(context)
                return Reply(
                    "The payment was declined again. " + card_link.text,
                    actions=card_link.actions,
                    data={"paid": False},
                    status="denied",
                )
        except grpc.aio.AioRpcError as error:
            reason = error_reason(error)
            await self._finish(proposal, {"error": reason or error.code().name})
            logger.warning("billing refused", extra={"reason": reason, "kind": proposal.kind.value})
            if reason == "CARD_DECLINED":
                card_link = await self._update_card(context)
                return Reply(
                    "The payment was declined again. " + card_link.text,
                    actions=card_link.actions,
                    status="denied",
                )
            if reason == "ALREADY_REFUNDED":
                return Reply("That charge was already refunded.", status="denied")
            if reason == "PLAN_CHANGE_REQUIRES_RESUBSCRIBE":
                return Reply(
                    "Your payment method can't be changed in place; cancel and subscribe "
                    "again to switch.",
                    status="denied",
                )
            return Reply(
                "Billing refused that request, so nothing changed. Want me to get a human?",
                status="error",
            )
        raise ValueError(f"nothing executes {proposal.kind}")

    async def _refused(
        self, context: Context, decision: ppb.AuthorizeResponse, short: str
    ) -> Reply:
        if decision.decision == ppb.DECISION_ESCALATE:
            reason = ppb.DecisionReason.Name(decision.reason).removeprefix("DECISION_REASON_")
            because = _reason_text(decision, context)
            return await self._handoff(
                context,
                reason=reason,
                note=f"Policy escalated: {short}.",
                text=(
                    f"I can't {short} on my own ({because}). "
                    "I've passed it to our team with the details"
                ),
                escalation_id=decision.escalation_id,
                status="escalated",
            )
        return Reply(
            f"I can't {short}: {_reason_text(decision, context)}.",
            status="denied",
            data={"decision": "DENY", "reason": ppb.DecisionReason.Name(decision.reason)},
        )

    # ----- hand-offs -----

    async def _handoff(
        self,
        context: Context,
        *,
        reason: str,
        note: str,
        text: str,
        escalation_id: str = "",
        status: str = "handoff",
        with_subscription: bool = True,
    ) -> Reply:
        transcript = await self._transcript(context.request)
        summary = await self._subscription_summary(context) if with_subscription else ""
        if not escalation_id:
            escalation_id = await self._open_escalation(
                context.workspace_id,
                context.assertion,
                reason=reason,
                context=ppb.EscalationContext(
                    conversation_id=context.conversation_id,
                    transcript_summary=transcript,
                    subscription_summary=summary,
                    note=note,
                ),
            )
        await self._notify_handoff(
            context.workspace_id,
            escalation_id,
            reason=reason,
            summary=f"{note}\n{summary}".strip(),
            transcript=transcript,
            email=context.contact.email,
            customer=context.contact.stripe_customer_id,
        )
        reference = f" (reference {escalation_id})" if escalation_id else ""
        ending = (
            ""
            if text.endswith(".")
            else f"{reference}. They'll reply to {context.contact.email or 'you'} soon."
        )
        return Reply(
            text + ending,
            actions=[Action("handoff", "Talk to a human", {"escalation_id": escalation_id})],
            escalated=True,
            escalation_id=escalation_id,
            status=status,
        )

    async def _open_escalation(
        self, workspace_id: str, assertion: str, *, reason: str, context: ppb.EscalationContext
    ) -> str:
        try:
            opened = await self._peers.policy.OpenEscalation(
                ppb.OpenEscalationRequest(
                    workspace_id=workspace_id,
                    identity_assertion=assertion,
                    reason=reason,
                    context=context,
                    idempotency_key=ids.new_id("edge_esc"),
                ),
                timeout=self._peers.timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.error(
                "escalation not opened",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )
            return ""
        return str(opened.escalation.escalation_id)

    async def _notify_handoff(
        self,
        workspace_id: str,
        escalation_id: str,
        *,
        reason: str,
        summary: str,
        transcript: str,
        email: str = "",
        customer: str = "",
    ) -> None:
        variables = {"reason": reason, "summary": summary or reason, "transcript": transcript}
        if escalation_id:
            variables["escalation_id"] = escalation_id
        if customer:
            variables["stripe_customer_id"] = customer
        try:
            await self._peers.notifier.Send(
                npb.SendRequest(
                    workspace_id=workspace_id,
                    recipient=npb.Recipient(email=email),
                    template=npb.TEMPLATE_HANDOFF,
                    variables=variables,
                    dedup_key=f"edge:handoff:{escalation_id or ids.new_id('anon')}",
                ),
                timeout=self._peers.timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.error(
                "hand-off not queued",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )

    async def _transcript(self, request: Request) -> str:
        async with self._pool.acquire() as connection:
            lines = await storage.recent_messages(
                connection, request.workspace_id, request.conversation_id
            )
        return "\n".join(_transcript_line(line) for line in lines)

    async def _subscription_summary(self, context: Context) -> str:
        try:
            answer = await self._peers.billing.GetSubscription(
                bpb.GetSubscriptionRequest(
                    workspace_id=context.workspace_id, identity_assertion=context.assertion
                ),
                timeout=self._peers.billing_timeout(),
            )
        except grpc.aio.AioRpcError:
            return "subscription unavailable"
        if not answer.HasField("subscription"):
            return "no subscription"
        sub = answer.subscription
        return (
            f"{sub.plan.name} ({_money(sub.plan.amount)}/{sub.plan.interval}), "
            f"{_status_word(sub.status)}, "
            f"subscription {sub.subscription_id}, customer {context.contact.stripe_customer_id}"
        )


def _transcript_line(line: storage.TranscriptLine) -> str:
    # An agent must never read an unproven visitor's words as the customer's.
    author = line.author
    if author == "visitor" and not line.verified:
        author = "visitor (unverified)"
    return f"{author}: {line.text}"


def _confirmation_reply(quote: Quote, conversation_id: str) -> Reply:
    # The buttons are the chat UI's: "text" for a typed answer, or the quote for
    # POST /v1/confirmations with the visitor's own proof.
    answer = {"quote_id": quote.quote_id, "terms_hash": quote.terms_hash}
    return Reply(
        f"{quote.summary} Shall I go ahead?",
        actions=[
            Action("confirm", "Yes, go ahead", {"text": "yes", **answer}),
            Action("cancel", "No", {"text": "no", **answer}),
        ],
        data={"quote": quote.as_json(), "conversation_id": conversation_id},
        status="needs_confirmation",
    )


def _reason_text(decision: ppb.AuthorizeResponse, context: Context) -> str:
    """A decision's reason in words, with its numbers."""
    reason = decision.reason
    usage = decision.usage
    resets = (
        f"; the next is possible on {formatting.date(_dt(usage.resets_at), context.zone)}"
        if usage.HasField("resets_at")
        else ""
    )
    # The bound reached may be the Stripe customer's, shared by everyone on the account.
    shared = usage.scope == ppb.COUNTER_SCOPE_CUSTOMER
    if reason == ppb.DECISION_REASON_PLAN_CHANGE_LIMIT:
        who = "your billing account has" if shared else "you've"
        return (
            f"{who} used {usage.used_count} of {usage.limit_count} plan changes this month{resets}"
        )
    if reason == ppb.DECISION_REASON_REFUND_OVER_CAP:
        if usage.HasField("limit_amount"):
            scope = " for your billing account" if shared else ""
            return (
                f"automatic refunds are limited to {_money(usage.limit_amount)} per period"
                f"{scope} and {_money(usage.remaining_amount)} is left{resets}"
            )
        return "it is over the automatic refund limit"
    if reason == ppb.DECISION_REASON_CONFIRMATION_INVALID:
        return "your confirmation didn't match what I offered, so nothing changed; ask me again"
    if reason == ppb.DECISION_REASON_REFUND_OUTSIDE_WINDOW:
        days = decision.refund_window.seconds // 86_400 if decision.HasField("refund_window") else 0
        return (
            f"the charge is older than the {days}-day refund window"
            if days
            else "the charge is outside the refund window"
        )
    if reason == ppb.DECISION_REASON_CURRENCY_NOT_COVERED:
        return "automatic refunds aren't set up for that currency"
    if reason == ppb.DECISION_REASON_CUSTOMER_NOT_LINKED:
        return "your account isn't linked to a billing profile yet"
    if reason == ppb.DECISION_REASON_SKILL_NOT_ENABLED:
        return "billing actions aren't enabled for this workspace"
    if reason in (
        ppb.DECISION_REASON_IDENTITY_REQUIRED,
        ppb.DECISION_REASON_ASSERTION_INVALID,
        ppb.DECISION_REASON_ASSERTION_EXPIRED,
        ppb.DECISION_REASON_WORKSPACE_MISMATCH,
    ):
        return "I couldn't confirm who you are"
    if reason == ppb.DECISION_REASON_INVALID_DETAILS:
        return "the request isn't valid"
    return "it isn't allowed"


def _status_word(status: int) -> str:
    """A subscription status as a lower-case word ("active", "past_due")."""
    name = bpb.SubscriptionStatus.Name(status)  # type: ignore[arg-type]
    return name.removeprefix("SUBSCRIPTION_STATUS_").lower()


def _money_json(value: cpb.Money) -> dict[str, Any]:
    return {
        "amount_minor": value.amount_minor,
        "currency": value.currency,
        "display": _money(value),
    }


def _plan_json(plan: bpb.Plan) -> dict[str, Any]:
    return {
        "price_id": plan.price_id,
        "name": plan.name,
        "tier": plan.tier,
        "amount": _money_json(plan.amount),
        "interval": plan.interval,
        "features": list(plan.features),
    }


def _invoice_json(invoice: bpb.InvoiceSummary) -> dict[str, Any]:
    return {
        "invoice_id": invoice.invoice_id,
        "number": invoice.number,
        "status": invoice.status,
        "amount_due": _money_json(invoice.amount_due),
        "amount_paid": _money_json(invoice.amount_paid),
        "created_at": _dt(invoice.created_at).isoformat(),
        "pdf_url": invoice.invoice_pdf_url,
        "hosted_url": invoice.hosted_invoice_url,
    }


def _sub_json(sub: bpb.Subscription) -> dict[str, Any]:
    return {
        "subscription_id": sub.subscription_id,
        "plan": _plan_json(sub.plan),
        "status": bpb.SubscriptionStatus.Name(sub.status)
        .removeprefix("SUBSCRIPTION_STATUS_")
        .lower(),
        "current_period_end": _dt(sub.current_period_end).isoformat()
        if sub.HasField("current_period_end")
        else None,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "paused": sub.paused,
        "plan_change_in_place": sub.plan_change_in_place,
        "scheduled_cancellation": sub.scheduled_cancellation.operation_id or None,
        "latest_invoice": _invoice_json(sub.latest_invoice)
        if sub.latest_invoice.invoice_id
        else None,
    }
