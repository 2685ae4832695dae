"""The use cases on a grant the enforcement point calls: Redeem, Commit and Release (and a
late Commit of a released or expired grant whose action happened after all).

Each runs in ``UseCases.run_audited``: the grant's row lock, its new state and its audit
entry, recorded unchained with the saved response in one statement. A due grant is expired
(in its own transaction, since the call's is rolled back) and the call refused with
GRANT_EXPIRED, except a Commit, which then commits the expired grant late; every refusal of
a grant is audited, also in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from google.protobuf.message import Message

from askvault.policy.v1 import policy_pb2 as pb
from policy import audit_log, convert, entries, expiry, grant_store, policy_metrics
from policy.deciding import Outcome, ResponseT, UseCases
from policy.domain import decisions, grants, periods
from policy.domain.model import Action, Details
from runtime import errors
from runtime.database import Connection

logger = logging.getLogger(__name__)

# Refusals of Redeem, Commit and Release that the audit log records (a malformed request or
# a reused idempotency key is not a decision about the grant and is not audited).
_GRANT_REFUSALS = frozenset(
    {
        "GRANT_INVALID",
        "GRANT_ALREADY_REDEEMED",
        "GRANT_EXPIRED",
        "GRANT_ALREADY_RESOLVED",
        "GRANT_DETAILS_MISMATCH",
        "REFUND_OUTSIDE_WINDOW",
        "PRICE_NOT_SELF_SERVE",
    }
)


def _existing(record: grant_store.GrantRecord | None) -> grant_store.GrantRecord:
    if record is None:
        raise errors.not_found("grant", reason="GRANT_INVALID")
    return record


async def _audit_refusal(
    cases: UseCases,
    workspace_id: str,
    grant_id: str,
    kind: str,
    refusal: errors.ServiceError,
    now: datetime,
) -> None:
    """Audits a refused call on a grant with the grant's parameters (just its id when there
    is no such grant); the grant itself is left as it was."""
    outcome = f"REFUSED:{refusal.reason}"
    async with cases.pool.acquire() as connection, connection.transaction():
        record = await grant_store.get_grant_for_update(connection, workspace_id, grant_id)
        entry = (
            entries.grant_entry(now, kind, record, outcome)
            if record is not None
            else entries.entry(
                now,
                kind,
                actor=("service", entries.ENFORCEMENT_POINT),
                outcome=outcome,
                subject_id=grant_id,
            )
        )
        await audit_log.record(connection, cases.audit_keys, workspace_id, [entry])


async def _on_grant(
    cases: UseCases,
    request: Message,
    workspace_id: str,
    grant_id: str,
    key: str,
    response_type: type[ResponseT],
    effect: Callable[[Connection, grant_store.GrantRecord | None], Awaitable[Outcome[ResponseT]]],
    now: datetime,
    refused_kind: str,
    *,
    after_expiry: bool = False,
) -> ResponseT:
    """``run_audited`` on a grant, claimed and locked in one round trip. A due grant is
    expired, then the call refused, or (``after_expiry``: a commit, late once the grant is
    expired) run again on the expired grant."""

    async def claim(
        connection: Connection, method: str, fingerprint: bytes
    ) -> tuple[bool, grant_store.GrantRecord | None]:
        return await grant_store.claim_with_grant(
            connection, workspace_id, key, method, fingerprint, grant_id
        )

    try:
        try:
            return await cases.run_audited(workspace_id, key, request, response_type, claim, effect)
        except grants.GrantDue:
            await expiry.expire_one(cases.pool, cases.audit_keys, workspace_id, grant_id, now)
            if not after_expiry:
                raise
        return await cases.run_audited(workspace_id, key, request, response_type, claim, effect)
    except grants.GrantDue:
        refusal = errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION, "GRANT_EXPIRED", "the grant expired"
        )
        await _audit_refusal(cases, workspace_id, grant_id, refused_kind, refusal, now)
        raise refusal from None
    except errors.ServiceError as error:
        if error.reason in _GRANT_REFUSALS:
            await _audit_refusal(cases, workspace_id, grant_id, refused_kind, error, now)
        raise


async def redeem(
    cases: UseCases, request: pb.RedeemRequest, action: Action, details: Details, now: datetime
) -> pb.RedeemResponse:
    """RESERVED -> REDEEMED, for exactly the grant's parameters."""
    workspace_id, grant_id = request.workspace_id, request.grant_id

    async def effect(
        connection: Connection, locked: grant_store.GrantRecord | None
    ) -> Outcome[pb.RedeemResponse]:
        record = _existing(locked)
        in_force = await cases.bounds(connection, workspace_id)
        approved = bool(record.escalation_id)
        grants.check_redeem(
            record.grant,
            action,
            details,
            now,
            # A grant a human approved was judged by them: window and price alike.
            refund_window=None if approved else in_force.refund_window,
            self_serve=None if approved else in_force.self_serve,
        )
        redeemed = await grant_store.redeem_grant(
            connection, workspace_id, grant_id, request.idempotency_key, now
        )
        return Outcome(
            pb.RedeemResponse(grant=convert.grant_pb(redeemed)),
            [entries.grant_entry(now, "grant.redeemed", redeemed, "REDEEMED")],
        )

    return await _on_grant(
        cases,
        request,
        workspace_id,
        grant_id,
        request.idempotency_key,
        pb.RedeemResponse,
        effect,
        now,
        "grant.redeem_refused",
    )


async def commit(cases: UseCases, request: pb.CommitRequest, now: datetime) -> pb.CommitResponse:
    """-> COMMITTED: the reservation counts for good. A RELEASED or EXPIRED grant (a due one
    is expired first) is committed late: its reservation is counted again (past the bounds if
    so) and audited as its own entry."""
    workspace_id, grant_id = request.workspace_id, request.grant_id
    # Set when this call committed late (not a replay): whether it went past a bound, and the
    # state the grant was committed from.
    late: list[tuple[bool, str]] = []

    async def effect(
        connection: Connection, locked: grant_store.GrantRecord | None
    ) -> Outcome[pb.CommitResponse]:
        record = _existing(locked)
        is_late = grants.check_commit(record.grant, now)
        # The grant as the final statement leaves it (audit_log.GrantCommit).
        committed = replace(
            record,
            grant=replace(record.grant, state=grants.State.COMMITTED),
            stripe_object_id=request.stripe_object_id,
        )
        response = pb.CommitResponse(grant=convert.grant_pb(committed))
        entry = entries.grant_entry(now, "grant.committed", committed, "COMMITTED")
        if is_late:
            over_bound = await _count_again(cases, connection, record)
            response.committed_late, response.over_bound = True, over_bound
            entry = entries.grant_entry(
                now, "grant.committed_late", committed, _late_outcome(record, over_bound)
            )
            late.append((over_bound, record.grant.state.value))
        return Outcome(
            response,
            [entry],
            audit_log.GrantCommit(grant_id, request.stripe_object_id, now),
        )

    response = await _on_grant(
        cases,
        request,
        workspace_id,
        grant_id,
        request.idempotency_key,
        pb.CommitResponse,
        effect,
        now,
        "grant.commit_refused",
        after_expiry=True,
    )
    if late:
        over_bound, committed_from = late[0]
        policy_metrics.count_late_commit(over_bound=over_bound)
        logger.warning(
            "a released or expired grant was committed late",
            extra={
                "workspace_id": workspace_id,
                "grant_id": grant_id,
                "over_bound": over_bound,
                "committed_from": committed_from,
            },
        )
    return response


async def _count_again(
    cases: UseCases, connection: Connection, record: grant_store.GrantRecord
) -> bool:
    """Counts a given-back grant's reservation again on the rows it was made on; whether that
    left one past the limit in force (never for a grant a human approved: an admin decided,
    as ``decisions.approval_reservation`` reserves without a limit)."""
    if record.counter is None or record.counter_period_start is None:
        return False
    in_force = await cases.bounds(connection, record.grant.workspace_id)
    # Only for a row that is gone: the period that holds the reservation's start.
    _, period_end = periods.bounds_of(
        in_force.counter_period, record.counter_period_start, in_force.time_zone
    )
    used = await grant_store.recount_reservation(connection, record, period_end)
    limit = (
        None
        if record.escalation_id
        else decisions.limit_for(record.counter, record.counter_currency, in_force)
    )
    return grants.exceeds(used.values(), limit)


def _late_outcome(record: grant_store.GrantRecord, over_bound: bool) -> str:
    """COMMITTED_LATE:OVER_BOUND or COMMITTED_LATE:WITHIN_BOUND, with why the reservation was
    given back (released, and why; or expired)."""
    outcome = f"COMMITTED_LATE:{'OVER_BOUND' if over_bound else 'WITHIN_BOUND'}"
    if record.grant.state is grants.State.EXPIRED:
        return f"{outcome} (expired)"
    return f"{outcome} (released: {record.release_reason})" if record.release_reason else outcome


async def release(cases: UseCases, request: pb.ReleaseRequest, now: datetime) -> pb.ReleaseResponse:
    """-> RELEASED, freeing the reservation."""
    workspace_id, grant_id = request.workspace_id, request.grant_id

    async def effect(
        connection: Connection, locked: grant_store.GrantRecord | None
    ) -> Outcome[pb.ReleaseResponse]:
        record = _existing(locked)
        grants.check_resolve(record.grant, now)
        released = await grant_store.release_grant(connection, record, request.reason, now)
        return Outcome(
            pb.ReleaseResponse(grant=convert.grant_pb(released)),
            [entries.grant_entry(now, "grant.released", released, "RELEASED")],
        )

    return await _on_grant(
        cases,
        request,
        workspace_id,
        grant_id,
        request.idempotency_key,
        pb.ReleaseResponse,
        effect,
        now,
        "grant.release_refused",
    )
