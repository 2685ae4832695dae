"""The failed-payment recovery cases an admin reads: a page of them with their timelines, and
the recovery figures over a period."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import case_store, convert
from billing_gateway.domain import recovery
from billing_gateway.ledger import Clock
from runtime import errors

_RECOVERY_STATE_NAMES = {value: key for key, value in convert.RECOVERY_STATES.items()}


def _page_size(value: int, default: int, maximum: int) -> int:
    return default if value <= 0 else min(value, maximum)


@dataclass(frozen=True)
class RecoveryReads:
    """The workspace's recovery cases and figures."""

    _pool: asyncpg.Pool
    _clock: Clock

    async def list_cases(
        self, request: pb.ListRecoveryCasesRequest
    ) -> pb.ListRecoveryCasesResponse:
        """A page of the workspace's recovery cases, by state, with their timelines."""
        limit = _page_size(request.page_size, 50, 500)
        after: tuple[datetime, str] | None = None
        if request.page_token:
            try:
                stamp, _, case_id = (
                    base64.urlsafe_b64decode(request.page_token).decode().partition("|")
                )
                after = (datetime.fromisoformat(stamp), case_id)
            except ValueError:
                raise errors.invalid_argument(
                    errors.FieldViolation("page_token", "not a token of this list")
                ) from None
        state = _RECOVERY_STATE_NAMES.get(request.state, "")
        async with self._pool.acquire() as connection:
            cases = await case_store.list_cases(
                connection, request.workspace_id, state, after, limit + 1
            )
            page = cases[:limit]
            timelines = await case_store.case_events(
                connection, request.workspace_id, [case.case_id for case in page]
            )
        token = ""
        if len(cases) > limit:
            last = page[-1]
            token = base64.urlsafe_b64encode(
                f"{last.opened_at.isoformat()}|{last.case_id}".encode()
            ).decode()
        return pb.ListRecoveryCasesResponse(
            cases=[
                pb.RecoveryCase(
                    case_id=case.case_id,
                    workspace_id=case.workspace_id,
                    stripe_customer_id=case.stripe_customer_id,
                    invoice_id=case.invoice_id,
                    amount_due=convert.money(case.amount_due_minor, case.currency),
                    state=convert.RECOVERY_STATES.get(case.state, pb.RECOVERY_STATE_UNSPECIFIED),
                    opened_at=convert.timestamp(case.opened_at),
                    closed_at=convert.timestamp(case.closed_at),
                    timeline=[
                        pb.RecoveryEvent(
                            occurred_at=convert.timestamp(at), kind=kind, detail=detail
                        )
                        for at, kind, detail in timelines.get(case.case_id, [])
                    ],
                )
                for case in page
            ],
            next_page_token=token,
        )

    async def stats(self, request: pb.GetRecoveryStatsRequest) -> pb.GetRecoveryStatsResponse:
        """The recovery figures of the cases opened in the request's period."""
        start = (
            request.start_time.ToDatetime(UTC)
            if request.HasField("start_time")
            else datetime.fromtimestamp(0, UTC)
        )
        end = (
            request.end_time.ToDatetime(UTC)
            if request.HasField("end_time")
            else self._clock() + timedelta(days=1)
        )
        async with self._pool.acquire() as connection:
            outcomes = await case_store.case_outcomes(connection, request.workspace_id, start, end)
        figures = recovery.stats(outcomes)
        return pb.GetRecoveryStatsResponse(
            failed=figures.failed,
            recovered_within_48h=figures.recovered_within_48h,
            recovered=figures.recovered,
            recovery_rate=figures.rate,
        )
