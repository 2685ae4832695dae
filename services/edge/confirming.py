"""The person's answer to a quote: a "yes" (typed in their own chat or WhatsApp, the chat UI's
confirm button, or the confirmation page followed by the tool's retry) runs exactly the
quoted terms once policy allows them with that confirmation; a "no" declines them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from askvault.policy.v1 import policy_pb2 as ppb
from edge import actions, quoting, reads, replies, storage, views
from edge.domain import proposals
from edge.domain.proposals import InvoiceBundleTerms, ProposalKind, ProposalState
from edge.turn import Context, Reply, StripeUnavailable, TurnDeps
from runtime.database import Connection

# Stored with a proposal confirmed on the confirmation page.
PAGE_CHANNEL = "mcp_elicitation"


async def confirm(
    deps: TurnDeps,
    context: Context,
    channel: ppb.ConfirmationChannel.ValueType,
    *,
    proposal_id: str = "",
    terms_hash: str = "",
) -> Reply:
    """The person's confirmation: a typed "yes" confirms the newest proposal to this
    visitor in this conversation; the confirm endpoint and the confirmation page name
    the quote (and its terms) they confirm."""
    async with deps.pool.acquire() as connection, connection.transaction():
        proposal = await _answered(connection, context, proposal_id)
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
        return Reply(replies.OFFER_EXPIRED, status="expired")
    if refusal is not None or proposal is None:
        return Reply(replies.NOTHING_PENDING, status="nothing_pending")
    terms = proposal.terms
    if isinstance(terms, InvoiceBundleTerms):
        reply = await reads.send_bundle(
            deps, context, terms, proposals.key(proposal.proposal_id, "do")
        )
        await _finish(deps, proposal, {"emailed": True})
        return reply
    decision = await quoting.authorize(
        deps,
        context,
        terms,
        ppb.Confirmation(
            quote=ppb.Quote(
                quote_id=proposal.proposal_id,
                summary=proposal.summary,
                expires_at=views.timestamp(proposal.expires_at),
                terms_hash=proposal.terms_hash,
            ),
            channel=channel,
            confirmed_at=views.timestamp(datetime.now(UTC)),
        ),
        proposals.key(proposal.proposal_id, "confirm"),
        replies.confirmed_note(proposal.summary),
    )
    if decision.decision != ppb.DECISION_ALLOW:
        await _finish(deps, proposal, {"decision": ppb.Decision.Name(decision.decision)})
        return await quoting.refused(deps, context, decision, terms.short or proposal.summary)

    async def finish(result: dict[str, Any]) -> None:
        await _finish(deps, proposal, result)

    granted = actions.Granted(
        workspace_id=context.workspace_id,
        identity_assertion=context.assertion,
        grant_id=decision.grant.grant_id,
        idempotency_key=proposals.key(proposal.proposal_id, "do"),
    )
    try:
        return await actions.execute(deps, context, terms, granted, finish)
    except StripeUnavailable:
        # The proposal is spent whatever Stripe did: the gateway's ledger settles the
        # write, the hand-off tells a human, and a later "yes" must not replay it.
        await _finish(deps, proposal, {"error": "STRIPE_UNAVAILABLE"})
        raise


async def confirmed_on_page(deps: TurnDeps, context: Context, kind: ProposalKind) -> Reply | None:
    """A tool call after the person confirmed its quote on the confirmation page runs
    that quote (the page itself holds no proof to act with); None when there is none."""
    async with deps.pool.acquire() as connection:
        proposal = await storage.newest_person_confirmed(
            connection, context.workspace_id, context.conversation_id, kind
        )
    if (
        proposal is None
        or proposals.confirmable(proposal, context.contact.contact_id, datetime.now(UTC))
        is not None
    ):
        return None
    return await confirm(
        deps,
        context,
        ppb.CONFIRMATION_CHANNEL_MCP_ELICITATION,
        proposal_id=proposal.proposal_id,
        terms_hash=proposal.terms_hash,
    )


async def decline(deps: TurnDeps, context: Context, proposal_id: str = "") -> Reply:
    """The person's "no": declines the proposal named, else the conversation's newest."""
    async with deps.pool.acquire() as connection, connection.transaction():
        proposal = await _answered(connection, context, proposal_id)
        if (
            proposal is not None
            and proposal.state is ProposalState.PENDING
            and proposal.contact_id == context.contact.contact_id
        ):
            await storage.set_proposal_state(connection, proposal, ProposalState.DECLINED)
            return Reply(replies.DECLINED)
    return Reply(replies.NOTHING_TO_DECLINE)


async def _answered(
    connection: Connection, context: Context, proposal_id: str
) -> proposals.Proposal | None:
    """The proposal an answer is about, locked: the one named, else the newest."""
    if proposal_id:
        return await storage.proposal_by_id(
            connection, context.workspace_id, context.conversation_id, proposal_id
        )
    return await storage.newest_proposal(connection, context.workspace_id, context.conversation_id)


async def _finish(deps: TurnDeps, proposal: proposals.Proposal, result: dict[str, Any]) -> None:
    async with deps.pool.acquire() as connection:
        await storage.set_proposal_state(connection, proposal, ProposalState.DONE, result)
