"""Outcomes, from the edge's ``GET /v1/admin/outcomes`` (admin bearer): the share of
billing conversations resolved without a human, by intent; refund requests inside the
automatic bounds against escalated ones; the time from first message to resolution; each
charted per day."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console import charts
from console.backends import CallFailed
from console.web import Admin, console_of, page, render

PATH = "/v1/admin/outcomes"
DAY_CHOICES = (7, 30, 90)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def outcome_charts(report: dict[str, Any]) -> dict[str, charts.Chart]:
    """The three daily charts of a report."""
    daily = [day for day in report.get("daily", []) if isinstance(day, dict)]
    labels = [str(day.get("day", ""))[5:] for day in daily]
    totals = [day.get("totals") or {} for day in daily]
    minutes = [_number(t.get("resolution_seconds_median")) / 60 for t in totals]
    return {
        "resolved": charts.bar_chart(
            labels,
            [_number(t.get("resolved_without_human_share")) for t in totals],
            top=1.0,
            as_percent=True,
        ),
        "refunds": charts.bar_chart(
            labels,
            [_number(t.get("refund_automatic_share")) for t in totals],
            top=1.0,
            as_percent=True,
        ),
        "minutes": charts.bar_chart(labels, minutes),
    }


async def outcomes(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    raw_days = request.query_params.get("days", "30")
    days = int(raw_days) if raw_days.isdigit() and int(raw_days) in DAY_CHOICES else 30
    problems: list[str] = []
    report: dict[str, Any] = {}
    try:
        answer = await backends.edge_get(
            PATH, {"workspace_id": admin.workspace_id, "days": str(days)}, admin.token
        )
        report = answer if isinstance(answer, dict) else {}
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "outcomes.html",
        admin,
        problems=problems,
        report=report,
        totals=report.get("totals") or {},
        intents=[i for i in report.get("intents", []) if isinstance(i, dict)],
        charts=outcome_charts(report) if report else {},
        days=days,
        day_choices=DAY_CHOICES,
    )


def routes() -> list[Route]:
    return [page("/outcomes", outcomes)]
