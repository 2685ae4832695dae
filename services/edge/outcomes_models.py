"""The answer of ``GET /v1/admin/outcomes`` (``outcomes_api``) as pydantic models."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class Figures(BaseModel):
    """The figures of one group of conversations."""

    billing_conversations: int = 0
    resolved_without_human: int = 0
    handed_to_human: int = 0
    # resolved_without_human / billing_conversations; None with no conversation.
    resolved_without_human_share: float | None = None
    refund_requests_automatic: int = 0
    refund_requests_escalated: int = 0
    # automatic / (automatic + escalated); None with no refund request.
    refund_automatic_share: float | None = None
    # From the conversation's first message to the turn that resolved it, in seconds, over
    # the conversations resolved without a human; None when there is none.
    resolution_seconds_median: float | None = None
    resolution_seconds_p90: float | None = None


class IntentFigures(Figures):
    """The figures of one billing intent ("status", "refund", "change_plan", ...)."""

    intent: str


class DayFigures(BaseModel):
    """One day (UTC): its totals and its figures per intent."""

    day: date
    totals: Figures
    intents: list[IntentFigures] = Field(default_factory=list)


class OutcomesReport(BaseModel):
    """The answer of ``GET /v1/admin/outcomes``."""

    workspace_id: str
    days: int
    # The first day counted (UTC); conversations begun on or after it.
    since: date
    generated_at: datetime
    totals: Figures
    intents: list[IntentFigures]
    daily: list[DayFigures]
