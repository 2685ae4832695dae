"""Handing a conversation to a human: policy opens the escalation (unless its own decision
already did), the notifier tells the agents with the transcript and the subscription, and
the visitor is told who will answer.

Unverified visitors are handed off too, but learn nothing: one escalation per conversation
while it is open, and the agents' emails about such hand-offs are limited per workspace.
"""

from __future__ import annotations

import logging

import grpc

from askvault.notifier.v1 import notifier_pb2 as npb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import agent_notes, escalation_notices, replies, storage
from edge.domain import intents
from edge.domain.intents import Intent, Parsed
from edge.peers import Peers, error_reason
from edge.turn import Context, Reply, Request, TurnDeps
from runtime import ids

logger = logging.getLogger(__name__)


async def handoff(
    deps: TurnDeps,
    context: Context,
    *,
    reason: str,
    note: str,
    text: str,
    escalation_id: str = "",
    status: str = "handoff",
    with_subscription: bool = True,
) -> Reply:
    """Hands the verified visitor's conversation to a human; ``escalation_id`` when policy
    already opened one."""
    transcript = await _transcript(deps, context.request)
    summary = subscription_summary(context) if with_subscription else ""
    if not escalation_id:
        escalation_id = await open_escalation(
            deps.peers,
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
    await escalation_notices.remember(deps, context, escalation_id)
    await _notify(
        deps.peers,
        context.workspace_id,
        escalation_id,
        reason=reason,
        summary=f"{note}\n{summary}".strip(),
        transcript=transcript,
        email=context.contact.email,
        customer=context.contact.stripe_customer_id,
    )
    return replies.handoff(text, escalation_id, context.contact.email, status)


async def escalation_context(deps: TurnDeps, context: Context, note: str) -> ppb.EscalationContext:
    """What policy attaches to an escalation its decision opens."""
    return ppb.EscalationContext(
        conversation_id=context.conversation_id,
        transcript_summary=await _transcript(deps, context.request),
        subscription_summary=subscription_summary(context),
        note=note,
    )


def subscription_summary(context: Context) -> str:
    """The subscription as the agents read it: what the turn already read (the gateway's
    answer, else the contact's tags); nothing is asked just to fill it."""
    return agent_notes.subscription_summary(context.reads.subscription, context.contact)


async def open_escalation(
    peers: Peers, workspace_id: str, assertion: str, *, reason: str, context: ppb.EscalationContext
) -> str:
    """Opens an escalation with policy; its id, or "" when policy did not answer."""
    try:
        opened = await peers.policy.OpenEscalation(
            ppb.OpenEscalationRequest(
                workspace_id=workspace_id,
                identity_assertion=assertion,
                reason=reason,
                context=context,
                idempotency_key=ids.new_id("edge_esc"),
            ),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.error(
            "escalation not opened",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return ""
    return str(opened.escalation.escalation_id)


async def _notify(
    peers: Peers,
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
        await peers.notifier.Send(
            npb.SendRequest(
                workspace_id=workspace_id,
                recipient=npb.Recipient(email=email),
                template=npb.TEMPLATE_HANDOFF,
                variables=variables,
                dedup_key=f"edge:handoff:{escalation_id or ids.new_id('anon')}",
            ),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.error(
            "hand-off not queued",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )


async def _transcript(deps: TurnDeps, request: Request) -> str:
    async with deps.pool.acquire() as connection:
        lines = await storage.recent_messages(
            connection, request.workspace_id, request.conversation_id
        )
    return "\n".join(
        f"{agent_notes.transcript_author(line.author, line.verified)}: {line.text}"
        for line in lines
    )


# ----- unverified visitors -----


async def unverified(deps: TurnDeps, request: Request, parsed: Parsed) -> Reply:
    """No data for an unproven visitor: billing questions go to a human."""
    if parsed.intent not in intents.BILLING_INTENTS and parsed.intent is not Intent.HUMAN:
        return Reply(replies.SIGN_IN_FIRST, status="ok")
    transcript = await _transcript(deps, request)
    escalation_id, email = await _unverified_escalation(deps, request, transcript)
    if email:
        await _notify(
            deps.peers,
            request.workspace_id,
            escalation_id,
            reason="IDENTITY_UNVERIFIED",
            summary=agent_notes.UNVERIFIED_SUMMARY,
            transcript=transcript,
        )
    return replies.unverified_handoff(escalation_id)


async def _unverified_escalation(
    deps: TurnDeps, request: Request, transcript: str
) -> tuple[str, bool]:
    """(escalation id, whether to email the agents) for an unverified hand-off: the
    conversation's open escalation when it has one (no email: the agents know), else a
    new one, emailed within the workspace's hourly limit for unverified hand-offs."""
    workspace_id, conversation_id = request.workspace_id, request.conversation_id
    async with deps.pool.acquire() as connection, connection.transaction():
        if not await storage.lock_unverified_conversation(
            connection, workspace_id, conversation_id
        ):
            # Another turn of this conversation is handing off right now: that one hand-off
            # serves both (waiting would hold a connection per flooding request).
            return "", False
        previous = await storage.newest_unverified_escalation(
            connection, workspace_id, conversation_id
        )
        if previous is not None and await _escalation_open(deps.peers, workspace_id, previous):
            return previous, False
        escalation_id = await open_escalation(
            deps.peers,
            workspace_id,
            "",
            reason="IDENTITY_UNVERIFIED",
            context=ppb.EscalationContext(
                conversation_id=conversation_id,
                transcript_summary=transcript,
                note=agent_notes.UNVERIFIED_NOTE,
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
            deps.limits.unverified_handoff_emails_per_hour,
        )
    return escalation_id, email


async def _escalation_open(peers: Peers, workspace_id: str, escalation_id: str) -> bool:
    """Whether an escalation still waits on an agent (when policy cannot say, it is
    taken as open: a flood must not open one per turn while policy is slow)."""
    try:
        found = await peers.policy.GetEscalation(
            ppb.GetEscalationRequest(workspace_id=workspace_id, escalation_id=escalation_id),
            timeout=peers.timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.warning(
            "escalation state unknown",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return bool(error.code() != grpc.StatusCode.NOT_FOUND)
    return bool(found.escalation.state == ppb.ESCALATION_STATE_OPEN)
