"""Telling a returning customer how their escalation ended.

When a verified visitor is handed to a human, the edge remembers the escalation for the
contact. On that contact's next turn (in any conversation) the escalations not yet told are
looked up in policy, and one that ended (executed, failed, declined) becomes one line before
the reply, told once: the turn that marks it reported is the one that tells it. A contact
with nothing due costs policy nothing (the turn's claim says whether anything is due), and
an open escalation is asked about again only after ``escalation_recheck_seconds``.
"""

from __future__ import annotations

import logging

import grpc

from askvault.policy.v1 import policy_pb2 as ppb
from edge import outcomes_storage
from edge.domain import outcomes
from edge.peers import error_reason
from edge.turn import Context, TurnDeps

logger = logging.getLogger(__name__)

# Escalations looked at in one turn, at most (the rest wait for the next turns).
MAX_CHECKS_PER_TURN = 3


async def remember(deps: TurnDeps, context: Context, escalation_id: str) -> None:
    """Remembers that the turn's contact waits on the escalation."""
    contact_id = context.contact.contact_id
    if not escalation_id or not contact_id:
        return
    async with deps.pool.acquire() as connection:
        await outcomes_storage.remember_escalation(
            connection, context.workspace_id, contact_id, escalation_id, context.conversation_id
        )


async def _escalation(
    deps: TurnDeps, workspace_id: str, escalation_id: str
) -> ppb.Escalation | None:
    try:
        found = await deps.peers.policy.GetEscalation(
            ppb.GetEscalationRequest(workspace_id=workspace_id, escalation_id=escalation_id),
            timeout=deps.peers.timeout(),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            # Nothing to tell, ever: no longer looked at.
            return ppb.Escalation(escalation_id=escalation_id)
        logger.warning(
            "escalation state unknown",
            extra={"code": error.code().name, "reason": error_reason(error)},
        )
        return None
    escalation: ppb.Escalation = found.escalation
    return escalation


async def due_notices(deps: TurnDeps, context: Context) -> list[str]:
    """The lines telling the contact how their escalations ended, each told once."""
    workspace_id, contact_id = context.workspace_id, context.contact.contact_id
    async with deps.pool.acquire() as connection:
        due = await outcomes_storage.claim_escalation_checks(
            connection,
            workspace_id,
            contact_id,
            deps.settings.escalation_recheck_seconds,
            MAX_CHECKS_PER_TURN,
        )
    lines: list[str] = []
    for escalation_id in due:
        escalation = await _escalation(deps, workspace_id, escalation_id)
        if escalation is None:
            continue
        line = outcomes.notice(escalation)
        state = outcomes.FINAL_STATES.get(escalation.state, "")
        if escalation.contact_id and escalation.contact_id != contact_id:
            line, state = "", ""  # not this contact's to hear about: never looked at again
        elif not state and escalation.state != ppb.ESCALATION_STATE_UNSPECIFIED:
            continue  # still open (or approved and not yet carried out): asked again later
        async with deps.pool.acquire() as connection:
            told = await outcomes_storage.mark_escalation_reported(
                connection, workspace_id, contact_id, escalation_id, state or "missing"
            )
        if told and line:
            lines.append(line)
    return lines
