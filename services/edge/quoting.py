"""Offering an action: policy is asked before the visitor, so a refusal is explained at once;
what policy would allow is only quoted (stored with its terms hash) and runs when the person
confirms it (``confirming``)."""

from __future__ import annotations

from datetime import timedelta

from askvault.policy.v1 import policy_pb2 as ppb
from edge import actions, handoff, replies, storage
from edge.domain import proposals
from edge.domain.proposals import MoneyTerms, Quote, Terms
from edge.turn import Context, Reply, TurnDeps
from runtime import ids, quotes


async def ask_policy(deps: TurnDeps, context: Context, terms: MoneyTerms, text: str) -> Reply:
    """Quotes ``terms`` (``text`` is the quote's sentence) when policy would allow them, else
    explains the refusal or hands off as policy decided."""
    proposal_id = ids.new_id("prop")
    decision = await authorize(
        deps,
        context,
        terms,
        None,
        proposals.key(proposal_id, "ask"),
        replies.asked_note(terms.short),
    )
    if decision.decision in (ppb.DECISION_NEEDS_CONFIRMATION, ppb.DECISION_ALLOW):
        quote = await store_proposal(deps, context, terms, text, proposal_id)
        return replies.confirmation(quote, context.conversation_id)
    return await refused(deps, context, decision, terms.short)


async def authorize(
    deps: TurnDeps,
    context: Context,
    terms: MoneyTerms,
    confirmation: ppb.Confirmation | None,
    key: str,
    note: str,
) -> ppb.AuthorizeResponse:
    """Policy's decision on ``terms`` (with the person's confirmation once they gave it)."""
    action, details = actions.policy_terms(terms, context.contact.stripe_customer_id)
    escalation_context = await handoff.escalation_context(deps, context, note)
    response: ppb.AuthorizeResponse = await deps.peers.policy.Authorize(
        ppb.AuthorizeRequest(
            workspace_id=context.workspace_id,
            identity_assertion=context.assertion,
            action=action,
            details=details,
            confirmed=confirmation is not None,
            confirmation=confirmation,
            context=escalation_context,
            idempotency_key=key,
        ),
        timeout=deps.peers.timeout(),
    )
    return response


async def store_proposal(
    deps: TurnDeps,
    context: Context,
    terms: Terms,
    summary: str,
    proposal_id: str = "",
) -> Quote:
    """Stores the offer with its quote: a money action's terms are hashed exactly as
    policy will check them when the person confirms."""
    proposal_id = proposal_id or ids.new_id("prop")
    # Whole seconds: the quote's expiry is hashed (and shown) at that precision.
    expires_at = (context.now + timedelta(seconds=deps.settings.proposal_ttl_seconds)).replace(
        microsecond=0
    )
    terms_hash = ""
    if not isinstance(terms, proposals.InvoiceBundleTerms):
        action, details = actions.policy_terms(terms, context.contact.stripe_customer_id)
        terms_hash = quotes.terms_hash(
            workspace_id=context.workspace_id,
            contact_id=context.contact.contact_id,
            action=action,
            details=details.SerializeToString(deterministic=True),
            summary=summary,
            expires_at=expires_at,
        )
    async with deps.pool.acquire() as connection:
        await storage.add_proposal(
            connection,
            workspace_id=context.workspace_id,
            conversation_id=context.conversation_id,
            proposal_id=proposal_id,
            contact_id=context.contact.contact_id,
            terms=terms,
            summary=summary,
            expires_at=expires_at,
            terms_hash=terms_hash,
        )
    return Quote(proposal_id, summary, expires_at, terms_hash)


async def refused(
    deps: TurnDeps, context: Context, decision: ppb.AuthorizeResponse, short: str
) -> Reply:
    """Explains policy's refusal of the action called ``short``; an escalation is handed to
    the team policy opened it for."""
    if decision.decision == ppb.DECISION_ESCALATE:
        reason = ppb.DecisionReason.Name(decision.reason).removeprefix("DECISION_REASON_")
        return await handoff.handoff(
            deps,
            context,
            reason=reason,
            note=replies.escalated_note(short),
            text=replies.escalated(short, replies.reason_text(decision, context)),
            escalation_id=decision.escalation_id,
            status="escalated",
        )
    return Reply(
        replies.denied(short, replies.reason_text(decision, context)),
        status="denied",
        data={"decision": "DENY", "reason": ppb.DecisionReason.Name(decision.reason)},
    )
