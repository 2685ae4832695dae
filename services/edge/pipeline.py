"""One chat turn, from text to reply: identity says who, policy says whether, the billing
gateway does, the notifier tells. The edge only asks and explains.

Chat turns, tool calls and WhatsApp messages all come through ``Engine.handle``, so every
one of them passes identity, policy and confirmation the same way: verify (and link the
contact to its Stripe customer from a signed fact), claim the conversation, store the
redacted text, dispatch by intent, store the reply.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
import grpc

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.identity.v1 import identity_pb2 as ipb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import (
    agent_notes,
    confirming,
    escalation_notices,
    handoff,
    llm_turns,
    offers,
    outcomes_storage,
    ratelimit,
    reads,
    replies,
    storage,
    whatsapp_linking,
    whatsapp_storage,
)
from edge.domain import intents, outcomes, redaction
from edge.domain.intents import Intent, Parsed
from edge.domain.proposals import ProposalKind
from edge.peers import Peers, error_reason, is_overloaded, is_unavailable
from edge.settings import EdgeSettings
from edge.turn import (
    Context,
    ConversationNotOwned,
    NotFound,
    NotLinked,
    Reply,
    Request,
    StripeUnavailable,
    TurnDeps,
)

logger = logging.getLogger(__name__)

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
    Intent.RESUME: ProposalKind.RESUME,
    Intent.RETRY_PAYMENT: ProposalKind.RETRY_PAYMENT,
}


class Engine:
    """Answers requests; holds no billing rule of its own."""

    def __init__(
        self,
        settings: EdgeSettings,
        pool: asyncpg.Pool,
        peers: Peers,
        limits: ratelimit.TurnLimits | None = None,
    ) -> None:
        self.deps = TurnDeps.build(settings, pool, peers, limits)

    async def handle(self, request: Request) -> Reply:
        """Answers one message (see ``handle``)."""
        return await handle(self.deps, request)

    def open_whatsapp_credential(self, link: whatsapp_storage.WhatsAppLink) -> str:
        """The user_hash a proven WhatsApp number was linked with."""
        return whatsapp_linking.open_credential(self.deps.secret_box, link)


async def handle(deps: TurnDeps, request: Request) -> Reply:
    """Answers one message: verifies, claims the conversation, stores the redacted text,
    dispatches, stores the reply.

    Verification comes first: a conversation belongs to the first verified contact that
    writes in it, and a turn from anyone else (another contact, or an unverified visitor
    once it has an owner) is refused before anything is stored or any proposal touched.
    """
    text = redaction.redact(request.text)
    now = datetime.now(UTC)
    terms = await deps.terms.get(request.workspace_id)
    zone = terms.time_zone
    parsed = request.parsed or intents.parse(text, now.astimezone(ZoneInfo(zone)))
    verified = await verify(deps.peers, request)
    if verified is not None:
        # Limited on proven identity only; RateLimited before anything is stored or answered.
        await deps.limits.check(
            request.workspace_id, verified[0].contact_id, verified[0].stripe_customer_id
        )
    contact_id = verified[0].contact_id if verified is not None else ""
    async with deps.pool.acquire() as connection:
        claim = await storage.claim_for_turn(
            connection,
            request.workspace_id,
            request.conversation_id,
            request.channel,
            contact_id,
            text,
            parsed.intent.value,
            verified=verified is not None,
        )
    if not claim.claimed:
        raise ConversationNotOwned(request.conversation_id)
    if verified is None:
        reply = await handoff.unverified(deps, request, parsed)
    else:
        contact, assertion, link = verified
        context = Context(request, contact, assertion, now, zone, terms.self_serve_price_ids)
        try:
            reply = await _dispatch(deps, context, parsed, text)
        except StripeUnavailable:
            reply = await _stripe_down(deps, context, agent_notes.STRIPE_DOWN_NOTE)
        except NotLinked:
            if link == "unavailable":
                reply = await _stripe_down(deps, context, agent_notes.STRIPE_DOWN_LINKING_NOTE)
            else:
                reply = Reply(
                    replies.no_billing_account(contact.email or contact.claimed_email),
                    status="not_found",
                )
        except NotFound as missing:
            reply = Reply(replies.not_found(str(missing)), status="not_found")
        if claim.notices_due:
            notices = await escalation_notices.due_notices(deps, context)
            if notices:
                reply.text = "\n".join([*notices, reply.text])
        if redaction.contains_card(request.text):
            reply.text = replies.CARD_IN_MESSAGE + reply.text
    reply.intent = reply.intent or parsed.intent.value
    reply.contact_id = contact_id
    outcome = outcomes.of_turn(parsed.intent, reply.intent, reply.status, reply.escalated)
    async with deps.pool.acquire() as connection:
        if outcome is None:
            await storage.append_message(
                connection,
                request.workspace_id,
                request.conversation_id,
                "bot",
                redaction.redact(reply.text),
                reply.intent,
            )
        else:
            await outcomes_storage.append_bot_line_with_outcome(
                connection,
                request.workspace_id,
                request.conversation_id,
                redaction.redact(reply.text),
                reply.intent,
                outcome,
            )
    return reply


async def _stripe_down(deps: TurnDeps, context: Context, note: str) -> Reply:
    return await handoff.handoff(
        deps,
        context,
        reason="STRIPE_UNAVAILABLE",
        note=note,
        text=replies.STRIPE_DOWN,
        with_subscription=False,
    )


# ----- who is asking -----


async def verify(peers: Peers, request: Request) -> tuple[ipb.Contact, str, str] | None:
    """The verified contact, its assertion and how linking it went, the contact bound to its
    Stripe customer when identity names a signed fact to find it by (a signed email, or the
    workspace's metadata key with the verified user id); None for a visitor with no or a bad
    identity. An email the visitor merely typed is never searched for."""
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
        answer = await peers.identity.VerifyVisitor(verify_request, timeout=peers.timeout())
    except grpc.aio.AioRpcError as error:
        if is_unavailable(error) or is_overloaded(error):
            # Identity cannot answer now: the visitor is not unverified, and treating them so
            # would refuse their own conversation (403) or hand them off as a stranger. The
            # turn is answered 503, nothing stored, and the client retries.
            raise
        logger.info(
            "visitor not verified",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return None
    contact = answer.contact
    link = "linked" if contact.stripe_customer_id else "none"
    lookup = answer.customer_lookup
    if not contact.stripe_customer_id and (lookup.email or lookup.metadata_key):
        link = await _link_customer(peers, request.workspace_id, contact, lookup)
        if link == "linked":
            try:
                answer = await peers.identity.VerifyVisitor(verify_request, timeout=peers.timeout())
            except grpc.aio.AioRpcError as error:
                if is_unavailable(error) or is_overloaded(error):
                    raise
                return None
            answer = await _tag_linked(peers, request.workspace_id, verify_request, answer)
    return answer.contact, answer.identity_assertion, link


async def _tag_linked(
    peers: Peers,
    workspace_id: str,
    verify_request: ipb.VerifyVisitorRequest,
    answer: ipb.VerifyVisitorResponse,
) -> ipb.VerifyVisitorResponse:
    """Tags the just-linked contact from its customer's subscription now, instead of at the
    customer's next subscription event, and answers with the tagged contact (once per
    contact: a hand-off of this very turn tells the agents its plan from the tags). A
    failure leaves the tags to the next event."""
    contact = answer.contact
    try:
        await peers.billing.SyncContactTags(
            bpb.SyncContactTagsRequest(
                workspace_id=workspace_id,
                identity_assertion=answer.identity_assertion,
                idempotency_key=f"edge:tags:{contact.contact_id}:{contact.stripe_customer_id}",
            ),
            timeout=peers.billing_timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.warning(
            "linked contact not tagged",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return answer
    try:
        tagged: ipb.VerifyVisitorResponse = await peers.identity.VerifyVisitor(
            verify_request, timeout=peers.timeout()
        )
    except grpc.aio.AioRpcError:
        return answer
    return tagged


async def _link_customer(
    peers: Peers, workspace_id: str, contact: ipb.Contact, lookup: ipb.CustomerLookup
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
            found = await peers.billing.FindCustomers(search, timeout=peers.billing_timeout())
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
            await peers.identity.LinkCustomer(link, timeout=peers.timeout())
            return "linked"
        return "none"
    except grpc.aio.AioRpcError as error:
        logger.info(
            "customer not linked",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return "unavailable" if is_unavailable(error) else "none"


# ----- what to do -----

# The answer to each intent, given (deps, context, parsed, the redacted text).
_Answer = Callable[[TurnDeps, Context, Parsed, str], Awaitable[Reply]]


async def _human(deps: TurnDeps, context: Context, parsed: Parsed, text: str) -> Reply:
    return await handoff.handoff(
        deps,
        context,
        reason="VISITOR_ASKED",
        note=agent_notes.HUMAN_ASKED_NOTE,
        text=replies.HUMAN_ASKED,
    )


async def _greeting(deps: TurnDeps, context: Context, parsed: Parsed, text: str) -> Reply:
    return Reply(replies.GREETING)


async def _clarify(deps: TurnDeps, context: Context, parsed: Parsed, text: str) -> Reply:
    return replies.clarify(parsed.alternatives)


# fmt: off
_ANSWERS: dict[Intent, _Answer] = {
    Intent.STATUS: lambda d, c, p, t: reads.status(d, c, p.intent),
    Intent.RENEWAL: lambda d, c, p, t: reads.status(d, c, p.intent),
    Intent.NEXT_INVOICE: lambda d, c, p, t: reads.status(d, c, p.intent),
    Intent.CURRENT_PLAN: lambda d, c, p, t: reads.status(d, c, p.intent),
    Intent.INVOICES: lambda d, c, p, t: reads.invoices(d, c, p.period),
    Intent.EMAIL_INVOICES: lambda d, c, p, t: reads.email_invoices(d, c, p.period),
    Intent.DUPLICATE_CHARGE: lambda d, c, p, t: offers.duplicates(d, c),
    Intent.REFUND: lambda d, c, p, t: offers.refund(d, c, p),
    Intent.LIST_PLANS: lambda d, c, p, t: reads.list_plans(d, c),
    Intent.CHANGE_PLAN: lambda d, c, p, t: offers.change_plan(d, c, p, t),
    Intent.CANCEL: lambda d, c, p, t: offers.cancel(d, c),
    Intent.PAUSE: lambda d, c, p, t: offers.pause(d, c),
    Intent.UNDO: lambda d, c, p, t: reads.undo(d, c),
    Intent.RESUME: lambda d, c, p, t: offers.resume(d, c),
    Intent.PAYMENT_FAILED: lambda d, c, p, t: reads.payment_failed(d, c),
    Intent.RETRY_PAYMENT: lambda d, c, p, t: offers.retry(d, c, p.invoice_id),
    Intent.UPDATE_CARD: lambda d, c, p, t: reads.update_card(d, c),
    Intent.HUMAN: _human,
    Intent.WHATSAPP_OPT_IN: lambda d, c, p, t: whatsapp_linking.opt_in(d, c, t),
    Intent.GREETING: _greeting,
    Intent.CLARIFY: _clarify,
}
# fmt: on


async def _dispatch(deps: TurnDeps, context: Context, parsed: Parsed, text: str) -> Reply:
    """The person's answer to a quote first, then the answer for the intent."""
    intent = parsed.intent
    request = context.request
    if request.quote_answer is not None:
        answer = request.quote_answer
        if not answer.confirm:
            return await confirming.decline(deps, context, answer.quote_id)
        return await confirming.confirm(
            deps,
            context,
            ppb.CONFIRMATION_CHANNEL_CONFIRM_ENDPOINT,
            proposal_id=answer.quote_id,
            terms_hash=answer.terms_hash,
        )
    if intent is Intent.YES:
        channel = _YES_CHANNELS.get(request.channel)
        if channel is None:
            return Reply(replies.ONLY_THE_CUSTOMER_CONFIRMS, status="denied")
        return await confirming.confirm(deps, context, channel)
    if intent is Intent.NO:
        return await confirming.decline(deps, context)
    if request.runs_confirmed_quote and intent in _KIND_OF_INTENT:
        confirmed_on_page = await confirming.confirmed_on_page(
            deps, context, _KIND_OF_INTENT[intent]
        )
        if confirmed_on_page is not None:
            return confirmed_on_page
    if llm_turns.takes(deps.settings, request, intent):
        return await llm_turns.answer(
            deps,
            context,
            text,
            run_tool=lambda tool_parsed: _ANSWERS[tool_parsed.intent](
                deps, context, tool_parsed, ""
            ),
            rules=lambda: _rules(deps, context, parsed, text),
        )
    return await _rules(deps, context, parsed, text)


async def _rules(deps: TurnDeps, context: Context, parsed: Parsed, text: str) -> Reply:
    """The rules' answer for the intent."""
    answer_for = _ANSWERS.get(parsed.intent)
    if answer_for is None:
        return Reply(replies.CAPABILITIES)
    return await answer_for(deps, context, parsed, text)
