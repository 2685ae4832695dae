"""The edge's records for issue 17: the escalations each contact waits to hear about, and
how each conversation went (the outcomes page). The SQL is in queries.sql."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from edge.domain.outcomes import TurnOutcome
from runtime.database import Connection, Queries

queries = Queries("edge")


async def remember_escalation(
    connection: Connection,
    workspace_id: str,
    contact_id: str,
    escalation_id: str,
    conversation_id: str,
) -> None:
    """Remembers that the contact waits on the escalation (once)."""
    await connection.execute(
        queries.remember_escalation, workspace_id, contact_id, escalation_id, conversation_id
    )


async def claim_escalation_checks(
    connection: Connection, workspace_id: str, contact_id: str, recheck_seconds: float, limit: int
) -> list[str]:
    """The contact's escalations due for a look, each put off by ``recheck_seconds``."""
    rows = await connection.fetch(
        queries.claim_escalation_checks, workspace_id, contact_id, recheck_seconds, limit
    )
    return [str(row["escalation_id"]) for row in rows]


async def mark_escalation_reported(
    connection: Connection, workspace_id: str, contact_id: str, escalation_id: str, state: str
) -> bool:
    """True for the one caller that gets to tell the contact."""
    return bool(
        await connection.fetchval(
            queries.mark_escalation_reported, workspace_id, contact_id, escalation_id, state
        )
    )


async def append_bot_line_with_outcome(
    connection: Connection,
    workspace_id: str,
    conversation_id: str,
    text: str,
    intent: str,
    outcome: TurnOutcome,
) -> None:
    """The bot's (redacted) line in the transcript and the turn's part in how its
    conversation went, in one statement."""
    await connection.execute(
        queries.append_bot_line_with_outcome,
        workspace_id,
        conversation_id,
        text,
        intent,
        outcome.intent,
        outcome.resolved,
        outcome.handed_off,
        outcome.refund_decision,
    )


@dataclass(frozen=True)
class OutcomeRow:
    """One group of the outcomes report: a day and intent, a day's total (intent None), an
    intent's total over the period (day None), or the whole period (both None)."""

    day: date | None
    intent: str | None
    conversations: int
    resolved: int
    handed_off: int
    refunds_automatic: int
    refunds_escalated: int
    median_seconds: float | None
    p90_seconds: float | None


async def outcomes_report(
    connection: Connection, workspace_id: str, since: datetime
) -> list[OutcomeRow]:
    """The workspace's outcomes of conversations begun at or after ``since``."""
    rows = await connection.fetch(queries.outcomes_report, workspace_id, since)
    return [
        OutcomeRow(
            day=None if row["all_days"] else row["day"],
            intent=None if row["all_intents"] else row["intent"],
            conversations=row["conversations"],
            resolved=row["resolved"],
            handed_off=row["handed_off"],
            refunds_automatic=row["refunds_automatic"],
            refunds_escalated=row["refunds_escalated"],
            median_seconds=row["median_seconds"],
            p90_seconds=row["p90_seconds"],
        )
        for row in rows
    ]
