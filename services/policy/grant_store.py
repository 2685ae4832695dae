"""Storage of grants and the counters they reserve on (a grant's reservation is added to,
freed from and counted again on the counters in the same statements that change the grant);
the only module that runs their SQL (grant_queries.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg

from policy.domain import grants
from policy.domain.decisions import Counter, Reservation, Scope
from policy.domain.model import Action, Details, Money
from runtime.database import Connection, Queries

queries = Queries("policy", "grant_queries.sql")


# -- counters ------------------------------------------------------------------------------


async def reserve(
    connection: Connection,
    workspace_id: str,
    *,
    customer_id: str,
    contact_id: str,
    reservation: Reservation,
) -> tuple[bool, dict[Scope, int]]:
    """Adds the reservation to the customer's counter and to the visitor's if it fits both,
    in the caller's transaction; (True, the new usage of each) or (False, their usage
    unchanged). The customer's row is locked first, then the visitor's, here and wherever
    both are touched, so concurrent reservations queue instead of deadlocking and the rows
    stay exact."""
    if reservation.quantity > reservation.limit:
        return False, await counters_used(
            connection,
            workspace_id,
            customer_id=customer_id,
            contact_id=contact_id,
            reservation=reservation,
        )
    row = (
        reservation.counter.value,
        reservation.currency,
        reservation.period_start,
        reservation.period_end,
        reservation.quantity,
        reservation.limit,
    )
    customer_used = await connection.fetchval(
        queries.reserve_customer, workspace_id, customer_id, *row
    )
    visitor_used = None
    if customer_used is not None:
        visitor_used = await connection.fetchval(queries.reserve, workspace_id, contact_id, *row)
        if visitor_used is None:
            # The customer's row is ours until the transaction ends: take the quantity back.
            await connection.execute(
                queries.free_customer, workspace_id, customer_id, *row[:3], reservation.quantity
            )
    if customer_used is None or visitor_used is None:
        return False, await counters_used(
            connection,
            workspace_id,
            customer_id=customer_id,
            contact_id=contact_id,
            reservation=reservation,
        )
    return True, {Scope.CUSTOMER: int(customer_used), Scope.VISITOR: int(visitor_used)}


async def counters_used(
    connection: Connection,
    workspace_id: str,
    *,
    customer_id: str,
    contact_id: str,
    reservation: Reservation,
) -> dict[Scope, int]:
    """The current usage of the reservation's counter for the customer and the visitor
    (0 where there is no row)."""
    row = await connection.fetchrow(
        queries.counters_used,
        workspace_id,
        customer_id,
        contact_id,
        reservation.counter.value,
        reservation.currency,
        reservation.period_start,
    )
    assert row is not None
    return {Scope.CUSTOMER: int(row["customer_used"]), Scope.VISITOR: int(row["visitor_used"])}


# -- grants --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantRecord:
    """A stored grant with the counter it reserved on."""

    grant: grants.Grant
    counter: Counter | None
    counter_currency: str
    counter_period_start: datetime | None
    quantity: int
    stripe_object_id: str
    escalation_id: str
    # Why the enforcement point released it ("" unless RELEASED).
    release_reason: str = ""


def _grant(row: asyncpg.Record) -> GrantRecord:
    amount = Money(row["amount_minor"], row["currency"]) if row["currency"] else None
    details = Details(
        stripe_customer_id=row["stripe_customer_id"],
        charge_id=row["charge_id"],
        subscription_id=row["subscription_id"],
        invoice_id=row["invoice_id"],
        amount=amount,
        charge_created_at=row["charge_created_at"],
        target_price_id=row["target_price_id"],
    )
    return GrantRecord(
        grant=grants.Grant(
            grant_id=row["grant_id"],
            workspace_id=row["workspace_id"],
            contact_id=row["contact_id"],
            action=Action(row["action"]),
            details=details,
            state=grants.State(row["state"]),
            expires_at=row["expires_at"],
            created_at=row["created_at"],
            cancellation_grace=row["cancellation_grace"],
            redeem_key=row["redeem_key"],
        ),
        counter=Counter(row["counter"]) if row["counter"] else None,
        counter_currency=row["counter_currency"],
        counter_period_start=row["counter_period_start"],
        quantity=row["quantity"],
        stripe_object_id=row["stripe_object_id"],
        escalation_id=row["escalation_id"],
        release_reason=row["release_reason"],
    )


async def insert_grant(
    connection: Connection,
    workspace_id: str,
    grant_id: str,
    contact_id: str,
    action: Action,
    details: Details,
    *,
    expires_at: datetime,
    now: datetime,
    cancellation_grace: timedelta | None,
    reservation: Reservation | None,
    escalation_id: str = "",
) -> GrantRecord:
    """Stores a RESERVED grant (its reservation was already added to the counter)."""
    amount = details.amount or Money(0, "")
    row = await connection.fetchrow(
        queries.insert_grant,
        workspace_id,
        grant_id,
        contact_id,
        action.value,
        details.stripe_customer_id,
        details.charge_id,
        details.subscription_id,
        details.invoice_id,
        amount.amount_minor,
        amount.currency,
        details.charge_created_at,
        details.target_price_id,
        expires_at,
        now,
        cancellation_grace,
        reservation.counter.value if reservation else None,
        reservation.currency if reservation else "",
        reservation.period_start if reservation else None,
        reservation.quantity if reservation else 0,
        escalation_id,
    )
    assert row is not None
    return _grant(row)


async def reserve_and_grant(
    connection: Connection,
    workspace_id: str,
    grant_id: str,
    contact_id: str,
    action: Action,
    details: Details,
    *,
    customer_id: str,
    reservation: Reservation,
    expires_at: datetime,
    now: datetime,
    cancellation_grace: timedelta | None,
) -> tuple[dict[Scope, int], GrantRecord | None]:
    """``reserve`` then ``insert_grant`` in one statement (the same row locks, in the same
    order): the usage of the customer's and the visitor's rows, and the RESERVED grant, or
    None when the reservation did not fit (usage unchanged, no grant)."""
    amount = details.amount or Money(0, "")
    row = await connection.fetchrow(
        queries.reserve_and_grant,
        workspace_id,
        customer_id,
        contact_id,
        reservation.counter.value,
        reservation.currency,
        reservation.period_start,
        reservation.period_end,
        reservation.quantity,
        reservation.limit,
        grant_id,
        action.value,
        details.stripe_customer_id,
        details.charge_id,
        details.subscription_id,
        details.invoice_id,
        amount.amount_minor,
        amount.currency,
        details.charge_created_at,
        details.target_price_id,
        expires_at,
        now,
        cancellation_grace,
    )
    assert row is not None
    used = {Scope.CUSTOMER: int(row["customer_used"]), Scope.VISITOR: int(row["visitor_used"])}
    if not row["fits"]:
        return used, None
    # What the function inserted, as ``_grant`` would read it back.
    record = GrantRecord(
        grant=grants.Grant(
            grant_id=grant_id,
            workspace_id=workspace_id,
            contact_id=contact_id,
            action=action,
            details=replace(details, amount=details.amount if amount.currency else None),
            state=grants.State.RESERVED,
            expires_at=expires_at,
            created_at=now,
            cancellation_grace=cancellation_grace,
        ),
        counter=reservation.counter,
        counter_currency=reservation.currency,
        counter_period_start=reservation.period_start,
        quantity=reservation.quantity,
        stripe_object_id="",
        escalation_id="",
    )
    return used, record


async def get_grant_for_update(
    connection: Connection, workspace_id: str, grant_id: str
) -> GrantRecord | None:
    """One grant, locked until the transaction ends."""
    row = await connection.fetchrow(queries.get_grant_for_update, workspace_id, grant_id)
    return _grant(row) if row else None


async def claim_with_grant(
    connection: Connection,
    workspace_id: str,
    key: str,
    method: str,
    fingerprint: bytes,
    grant_id: str,
) -> tuple[bool, GrantRecord | None]:
    """Claims the idempotency key and locks the grant, in one round trip: (claimed, the
    grant or None)."""
    row = await connection.fetchrow(
        queries.claim_with_grant, workspace_id, key, method, fingerprint, grant_id
    )
    assert row is not None
    return bool(row["claimed"]), _grant(row) if row["grant_id"] is not None else None


async def redeem_grant(
    connection: Connection, workspace_id: str, grant_id: str, key: str, now: datetime
) -> GrantRecord:
    """RESERVED -> REDEEMED."""
    row = await connection.fetchrow(queries.redeem_grant, workspace_id, grant_id, key, now)
    assert row is not None
    return _grant(row)


def _counter_row(record: GrantRecord) -> tuple[str, str, datetime]:
    assert record.counter is not None and record.counter_period_start is not None
    return (record.counter.value, record.counter_currency, record.counter_period_start)


async def free_reservations(connection: Connection, records: Sequence[GrantRecord]) -> None:
    """Takes the grants' reservations off the customers' and the visitors' counters they
    were made on: every customer row first, then every visitor row, each in sorted order,
    so that freeing never waits in an order that a reservation (customer, then visitor)
    could wait in the other way."""
    counted = [r for r in records if r.counter is not None and r.counter_period_start]
    by_customer = sorted(
        (r for r in counted if r.grant.details.stripe_customer_id),
        key=lambda r: (r.grant.details.stripe_customer_id, *_counter_row(r)),
    )
    for record in by_customer:
        await connection.execute(
            queries.free_customer,
            record.grant.workspace_id,
            record.grant.details.stripe_customer_id,
            *_counter_row(record),
            record.quantity,
        )
    for record in sorted(counted, key=lambda r: (r.grant.contact_id, *_counter_row(r))):
        await connection.execute(
            queries.free,
            record.grant.workspace_id,
            record.grant.contact_id,
            *_counter_row(record),
            record.quantity,
        )


async def release_grant(
    connection: Connection, record: GrantRecord, reason: str, now: datetime
) -> GrantRecord:
    """-> RELEASED, freeing the reservation."""
    await free_reservations(connection, [record])
    row = await connection.fetchrow(
        queries.release_grant, record.grant.workspace_id, record.grant.grant_id, reason, now
    )
    assert row is not None
    return _grant(row)


async def recount_reservation(
    connection: Connection, record: GrantRecord, period_end: datetime
) -> dict[Scope, int]:
    """Adds a released or expired grant's reservation back to the customer's and the
    visitor's counters it was made on, whatever their limit (a late commit: the action
    happened), locking the customer's row first as ``reserve`` does; the usage of each after
    (no entry for a grant that reserved nothing, nor a customer's for a grant without a
    customer). ``period_end`` is used only for a row that no longer exists."""
    if record.counter is None or record.counter_period_start is None:
        return {}
    workspace_id = record.grant.workspace_id
    row = (*_counter_row(record), period_end, record.quantity)
    used: dict[Scope, int] = {}
    customer_id = record.grant.details.stripe_customer_id
    if customer_id:
        used[Scope.CUSTOMER] = int(
            await connection.fetchval(queries.recount_customer, workspace_id, customer_id, *row)
        )
    used[Scope.VISITOR] = int(
        await connection.fetchval(queries.recount, workspace_id, record.grant.contact_id, *row)
    )
    return used


async def expire_grant(connection: Connection, record: GrantRecord, now: datetime) -> GrantRecord:
    """RESERVED -> EXPIRED; the caller frees the reservation (``free_reservations``)."""
    row = await connection.fetchrow(
        queries.expire_grant, record.grant.workspace_id, record.grant.grant_id, now
    )
    assert row is not None
    return _grant(row)


async def workspaces_with_due_grants(
    connection: Connection, now: datetime, limit: int
) -> list[str]:
    """Workspaces that have RESERVED grants past their expiry."""
    rows = await connection.fetch(queries.workspaces_with_due_grants, now, limit)
    return [row["workspace_id"] for row in rows]


async def claim_due_grants(
    connection: Connection, workspace_id: str, now: datetime, limit: int
) -> list[GrantRecord]:
    """Locks due grants of one workspace that no other worker holds."""
    rows = await connection.fetch(queries.claim_due_grants, workspace_id, now, limit)
    return [_grant(row) for row in rows]
