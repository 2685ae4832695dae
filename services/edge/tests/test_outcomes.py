"""Pure rules of issue 17 at the edge: the line telling a returning customer how their
escalation ended, how a turn counts on the outcomes page, and the page's shape."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from askvault.common.v1 import common_pb2 as cpb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import outcomes_api
from edge.domain import outcomes
from edge.domain.intents import Intent
from edge.outcomes_storage import OutcomeRow


def _refund(
    state: ppb.EscalationState.ValueType,
    *,
    stripe_object_id: str = "",
    failure_reason: str = "",
    decision_note: str = "",
) -> ppb.Escalation:
    return ppb.Escalation(
        escalation_id="esc_1",
        action=cpb.BILLING_ACTION_REFUND,
        details=ppb.ActionDetails(amount=cpb.Money(amount_minor=4900, currency="usd")),
        state=state,
        stripe_object_id=stripe_object_id,
        failure_reason=failure_reason,
        decision_note=decision_note,
    )


@pytest.mark.parametrize(
    ("escalation", "line"),
    [
        (
            _refund(ppb.ESCALATION_STATE_EXECUTED, stripe_object_id="re_1"),
            "About your earlier request: we refunded $49.",
        ),
        (
            _refund(ppb.ESCALATION_STATE_FAILED, failure_reason="ALREADY_REFUNDED"),
            "About your earlier request (a refund of $49): it could not be done because the "
            "charge was already refunded; nothing was changed.",
        ),
        (
            _refund(ppb.ESCALATION_STATE_REJECTED, decision_note="Outside our policy."),
            "About your earlier request (a refund of $49): it was declined: Outside our policy.",
        ),
        (
            _refund(ppb.ESCALATION_STATE_REJECTED),
            "About your earlier request (a refund of $49): it was declined.",
        ),
        (
            ppb.Escalation(
                action=cpb.BILLING_ACTION_CHANGE_PLAN, state=ppb.ESCALATION_STATE_EXECUTED
            ),
            "About your earlier request: your plan change is done.",
        ),
        (_refund(ppb.ESCALATION_STATE_OPEN), ""),
        (_refund(ppb.ESCALATION_STATE_APPROVED), ""),
    ],
)
def test_the_notice_says_how_the_escalation_ended(escalation: ppb.Escalation, line: str) -> None:
    assert outcomes.notice(escalation) == line


def test_a_card_number_in_a_note_never_reaches_the_chat() -> None:
    line = outcomes.notice(
        _refund(ppb.ESCALATION_STATE_REJECTED, decision_note="card 4242 4242 4242 4242 expired")
    )
    assert "4242 4242" not in line


@pytest.mark.parametrize(
    ("parsed", "reply_intent", "status", "escalated", "expected"),
    [
        (Intent.STATUS, "status", "ok", False, outcomes.TurnOutcome("status", True, False, "")),
        (
            Intent.REFUND,
            "refund",
            "needs_confirmation",
            False,
            outcomes.TurnOutcome("refund", False, False, outcomes.AUTOMATIC),
        ),
        (
            Intent.REFUND,
            "refund",
            "escalated",
            True,
            outcomes.TurnOutcome("refund", False, True, outcomes.ESCALATED),
        ),
        # A "yes" continues the conversation's latest billing request and resolves it.
        (Intent.YES, "yes", "ok", False, outcomes.TurnOutcome("", True, False, "")),
        (Intent.HUMAN, "human", "handoff", True, outcomes.TurnOutcome("", False, True, "")),
        (Intent.GREETING, "greeting", "ok", False, None),
        (Intent.CLARIFY, "clarify", "ok", False, None),
    ],
)
def test_how_a_turn_counts(
    parsed: Intent,
    reply_intent: str,
    status: str,
    escalated: bool,
    expected: outcomes.TurnOutcome | None,
) -> None:
    assert outcomes.of_turn(parsed, reply_intent, status, escalated) == expected


def _row(day: date | None, intent: str | None, conversations: int) -> OutcomeRow:
    return OutcomeRow(day, intent, conversations, conversations, 0, 0, 0, 12.0, 30.0)


def test_the_report_lists_every_day_of_the_period() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    rows = [
        _row(date(2026, 11, 29), "status", 2),
        _row(date(2026, 11, 29), None, 2),
        _row(None, "status", 2),
        _row(None, None, 2),
    ]
    report = outcomes_api.build_report("ws", 3, date(2026, 11, 28), now, rows)
    assert [d.day for d in report.daily] == [date(2026, 11, 28), date(2026, 11, 29), now.date()]
    assert report.daily[0].totals.billing_conversations == 0
    assert report.daily[1].intents[0].intent == "status"
    assert report.daily[1].totals.resolved_without_human_share == 1.0
    assert report.totals.refund_automatic_share is None
    assert report.intents[0].resolution_seconds_p90 == 30.0
