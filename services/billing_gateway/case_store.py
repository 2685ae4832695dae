"""Storage of failed-payment recovery cases and their timelines; the only module that runs
their SQL (case_queries.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from billing_gateway.domain.recovery import CaseOutcome
from runtime.database import Connection, Queries

queries = Queries("billing_gateway", "case_queries.sql")


@dataclass(frozen=True)
class CaseRecord:
    """A recovery case."""

    workspace_id: str
    case_id: str
    stripe_customer_id: str
    invoice_id: str
    amount_due_minor: int
    currency: str
    state: str
    opened_at: datetime
    closed_at: datetime | None


def _case(row: asyncpg.Record) -> CaseRecord:
    return CaseRecord(
        workspace_id=row["workspace_id"],
        case_id=row["case_id"],
        stripe_customer_id=row["stripe_customer_id"],
        invoice_id=row["invoice_id"],
        amount_due_minor=row["amount_due_minor"],
        currency=row["currency"],
        state=row["state"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
    )


async def open_case(
    connection: Connection,
    *,
    workspace_id: str,
    case_id: str,
    stripe_customer_id: str,
    invoice_id: str,
    amount_due_minor: int,
    currency: str,
    opened_at: datetime,
) -> CaseRecord | None:
    """Opens a case for the invoice; None when it already has one."""
    row = await connection.fetchrow(
        queries.open_case,
        workspace_id,
        case_id,
        stripe_customer_id,
        invoice_id,
        amount_due_minor,
        currency,
        opened_at,
    )
    return _case(row) if row else None


async def case_by_invoice(
    connection: Connection, workspace_id: str, invoice_id: str
) -> CaseRecord | None:
    """The invoice's case, locked."""
    row = await connection.fetchrow(queries.case_by_invoice, workspace_id, invoice_id)
    return _case(row) if row else None


async def close_case(
    connection: Connection, case: CaseRecord, state: str, closed_at: datetime
) -> CaseRecord | None:
    """Closes an open case; None when it was not open."""
    row = await connection.fetchrow(
        queries.close_case, case.workspace_id, case.case_id, state, closed_at
    )
    return _case(row) if row else None


async def open_cases_of_customer(
    connection: Connection, workspace_id: str, stripe_customer_id: str
) -> list[CaseRecord]:
    """The customer's open cases, locked."""
    rows = await connection.fetch(queries.open_cases_of_customer, workspace_id, stripe_customer_id)
    return [_case(row) for row in rows]


async def add_case_event(
    connection: Connection,
    case: CaseRecord,
    occurred_at: datetime,
    kind: str,
    detail: str,
    source_id: str,
) -> None:
    """Appends to the case's timeline, once per source and kind."""
    await connection.execute(
        queries.add_case_event,
        case.workspace_id,
        case.case_id,
        occurred_at,
        kind,
        detail,
        source_id,
    )


async def list_cases(
    connection: Connection,
    workspace_id: str,
    state: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[CaseRecord]:
    """A page of cases, newest first, after the (opened_at, case_id) cursor."""
    rows = await connection.fetch(
        queries.list_cases,
        workspace_id,
        state,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return [_case(row) for row in rows]


async def case_events(
    connection: Connection, workspace_id: str, case_ids: Sequence[str]
) -> dict[str, list[tuple[datetime, str, str]]]:
    """case id -> its timeline (time, kind, detail) in order."""
    found: dict[str, list[tuple[datetime, str, str]]] = {}
    for row in await connection.fetch(queries.case_events, workspace_id, list(case_ids)):
        found.setdefault(row["case_id"], []).append(
            (row["occurred_at"], row["kind"], row["detail"])
        )
    return found


async def case_outcomes(
    connection: Connection, workspace_id: str, start: datetime, end: datetime
) -> list[CaseOutcome]:
    """Outcomes of the cases opened in [start, end)."""
    rows = await connection.fetch(queries.cases_opened_between, workspace_id, start, end)
    return [CaseOutcome(row["opened_at"], row["state"], row["closed_at"]) for row in rows]
