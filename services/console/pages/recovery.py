"""Recovery: failed payments and those recovered within 48 hours, week by week for the
last 12 weeks (GetRecoveryStats per week), as a chart beside the 15-25% that dunning emails
alone recover."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.billing.v1 import billing_pb2
from console import charts
from console.backends import BILLING, CallFailed
from console.web import Admin, console_of, page, render

WEEKS = 12
# What dunning emails alone recover (the industry's usual range), drawn as a band.
DUNNING_BAND = (0.15, 0.25)


def week_starts(now: datetime, weeks: int = WEEKS) -> list[datetime]:
    """The Mondays (00:00 UTC) of the last ``weeks`` weeks, oldest first, this week last."""
    monday = (now - timedelta(days=now.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return [monday - timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def stats(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    starts = week_starts(datetime.now(UTC))
    problems: list[str] = []

    async def one_week(start: datetime) -> billing_pb2.GetRecoveryStatsResponse:
        return await backends.call(
            BILLING,
            backends.billing.GetRecoveryStats,
            billing_pb2.GetRecoveryStatsRequest(
                workspace_id=admin.workspace_id,
                start_time=_stamp(start),
                end_time=_stamp(start + timedelta(weeks=1)),
            ),
            admin.token,
        )

    weeks: list[billing_pb2.GetRecoveryStatsResponse] = []
    try:
        weeks = list(await asyncio.gather(*(one_week(start) for start in starts)))
    except CallFailed as failure:
        problems.append(failure.text)
    labels = [start.strftime("%d %b") for start in starts]
    chart = (
        charts.bar_chart(
            labels,
            [week.recovery_rate for week in weeks],
            top=1.0,
            as_percent=True,
            band=DUNNING_BAND,
            band_text="dunning emails alone: 15-25%",
        )
        if weeks
        else None
    )
    failed = sum(week.failed for week in weeks)
    recovered = sum(week.recovered_within_48h for week in weeks)
    return render(
        request,
        "recovery.html",
        admin,
        problems=problems,
        chart=chart,
        rows=list(zip(labels, weeks, strict=False)),
        failed=failed,
        recovered=recovered,
        rate=(recovered / failed) if failed else 0.0,
    )


def routes() -> list[Route]:
    return [page("/recovery", stats)]
