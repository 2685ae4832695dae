"""The owner console's outcomes page: ``GET /v1/admin/outcomes?workspace_id=...&days=30`` with
an admin bearer credential (the identity provider's, as every admin RPC takes it). Per day
(UTC, the day the conversation began) and per billing intent: billing conversations, those
resolved without a human, those handed to a human; refund requests policy decided on its own
(quoted: ALLOW or NEEDS_CONFIRMATION) against those it escalated; the time from a
conversation's first message to its resolution (median, 90th percentile). Every day of the
period is listed, empty ones with zeros, so the console can chart it as it is."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge import outcomes_storage
from edge.http_api import ID_PATTERN, Edge
from edge.http_middleware import error
from edge.outcomes_models import DayFigures, Figures, IntentFigures, OutcomesReport
from runtime import auth, errors
from runtime.database import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)

PATH = "/v1/admin/outcomes"
DEFAULT_DAYS = 30
MAX_DAYS = 366
_STATUS_OF_KIND = {
    errors.Kind.UNAUTHENTICATED: 401,
    errors.Kind.PERMISSION_DENIED: 403,
    errors.Kind.UNAVAILABLE: 503,
}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _figures(row: outcomes_storage.OutcomeRow) -> dict[str, int | float | None]:
    return {
        "billing_conversations": row.conversations,
        "resolved_without_human": row.resolved,
        "handed_to_human": row.handed_off,
        "resolved_without_human_share": _share(row.resolved, row.conversations),
        "refund_requests_automatic": row.refunds_automatic,
        "refund_requests_escalated": row.refunds_escalated,
        "refund_automatic_share": _share(
            row.refunds_automatic, row.refunds_automatic + row.refunds_escalated
        ),
        "resolution_seconds_median": row.median_seconds,
        "resolution_seconds_p90": row.p90_seconds,
    }


def build_report(
    workspace_id: str,
    days: int,
    since: date,
    now: datetime,
    rows: list[outcomes_storage.OutcomeRow],
) -> OutcomesReport:
    """The report from the grouped rows, every day from ``since`` to ``now``'s listed."""
    totals = Figures()
    intents: list[IntentFigures] = []
    by_day: dict[date, DayFigures] = {}
    for offset in range((now.date() - since).days + 1):
        day = since + timedelta(days=offset)
        by_day[day] = DayFigures(day=day, totals=Figures())
    for row in rows:
        if row.day is None and row.intent is None:
            totals = Figures.model_validate(_figures(row))
        elif row.day is None:
            intents.append(IntentFigures.model_validate({**_figures(row), "intent": row.intent}))
        else:
            entry = by_day.setdefault(row.day, DayFigures(day=row.day, totals=Figures()))
            if row.intent is None:
                entry.totals = Figures.model_validate(_figures(row))
            else:
                entry.intents.append(
                    IntentFigures.model_validate({**_figures(row), "intent": row.intent})
                )
    return OutcomesReport(
        workspace_id=workspace_id,
        days=days,
        since=since,
        generated_at=now,
        totals=totals,
        intents=intents,
        daily=[by_day[day] for day in sorted(by_day)],
    )


class OutcomesEndpoint:
    """The admin route, bound to the edge's pool and an admin verifier."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self._admins = auth.AdminVerifier.from_settings(edge.settings)

    def routes(self) -> list[Route]:
        """The route to mount."""
        return [Route(PATH, self.outcomes, methods=["GET"])]

    async def outcomes(self, request: HttpRequest) -> Response:
        if not await self._edge.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        workspace_id = request.query_params.get("workspace_id", "")
        raw_days = request.query_params.get("days", str(DEFAULT_DAYS))
        fields: dict[str, str] = {}
        if not ID_PATTERN.match(workspace_id):
            fields["workspace_id"] = "required: letters, digits and _.:@+- (at most 128)"
        days = int(raw_days) if raw_days.isdigit() else 0
        if not 1 <= days <= MAX_DAYS:
            fields["days"] = f"a whole number from 1 to {MAX_DAYS}"
        if fields:
            return error(400, "INVALID_ARGUMENT", "invalid outcomes request", fields)
        authorization = request.headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        try:
            await self._admins.subject(token, workspace_id)
        except errors.ServiceError as refused:
            return error(_STATUS_OF_KIND.get(refused.kind, 403), refused.reason, refused.message)
        now = datetime.now(UTC)
        since = now.date() - timedelta(days=days - 1)
        try:
            async with self._edge.pool.acquire() as connection:
                rows = await outcomes_storage.outcomes_report(
                    connection, workspace_id, datetime.combine(since, datetime.min.time(), UTC)
                )
        except UNAVAILABLE_ERRORS as failure:
            logger.warning("database unavailable", extra={"error": type(failure).__name__})
            return error(503, "DATABASE_UNAVAILABLE", "try again shortly")
        report = build_report(workspace_id, days, since, now, rows)
        return JSONResponse(report.model_dump(mode="json"))
