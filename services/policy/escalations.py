"""An escalation's life: a hand-off opens it, admins read and list them, an admin approves
it (a grant for exactly the escalated action) or rejects it (with a note the customer is
told), and the billing gateway records how carrying out an approved one ended (executed with
the Stripe object, or failed: nothing moved).

States: open -> approved -> executed | failed; open -> rejected. Each call runs in one
transaction with its idempotency key, the escalation's row locked and its audit entries.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from askvault.policy.v1 import policy_pb2 as pb
from policy import audit_log, convert, entries, escalation_store, grant_store, policy_metrics
from policy.deciding import AssertionVerifier, UseCases
from policy.domain import audit, decisions
from policy.domain.decisions import Reason
from policy.domain.model import Action
from runtime import assertions, errors, idempotency, ids
from runtime.database import Connection

_DEFAULT_PAGE = 50
_MAX_PAGE = 500

# The outcomes the billing gateway records, by the state they put the escalation in.
_OUTCOMES = {pb.ESCALATION_STATE_EXECUTED: "executed", pb.ESCALATION_STATE_FAILED: "failed"}


@dataclass(frozen=True)
class Escalations:
    """What the escalation use cases share."""

    pool: asyncpg.Pool
    audit_keys: audit.MacKeys
    cases: UseCases
    # Lifetime of an approved escalation's grant (settings.approval_grant_ttl_seconds).
    approval_grant_ttl: timedelta


def _not_pending(state: str) -> errors.ServiceError:
    return errors.ServiceError(
        errors.Kind.FAILED_PRECONDITION,
        "NOT_PENDING",
        f"the escalation is already {state}",
        metadata={"state": state},
    )


async def _locked(
    connection: Connection, workspace_id: str, escalation_id: str
) -> escalation_store.EscalationRecord:
    record = await escalation_store.get_escalation(
        connection, workspace_id, escalation_id, for_update=True
    )
    if record is None:
        raise errors.not_found("escalation")
    return record


async def _open(
    connection: Connection, workspace_id: str, escalation_id: str
) -> escalation_store.EscalationRecord:
    record = await _locked(connection, workspace_id, escalation_id)
    if record.state != "open":
        raise _not_pending(record.state)
    return record


async def _presented_assertion(
    verifier: AssertionVerifier, request: pb.OpenEscalationRequest
) -> assertions.Assertion | None:
    """The hand-off's verified assertion; None for an anonymous one (it sends none)."""
    if not request.identity_assertion:
        return None
    # A presented assertion must verify.
    try:
        return await verifier.verify(request.identity_assertion, request.workspace_id)
    except assertions.AssertionRefused as refusal:
        raise errors.ServiceError(
            errors.Kind.UNAUTHENTICATED, refusal.reason, str(refusal)
        ) from None


async def open_escalation(
    uses: Escalations,
    verifier: AssertionVerifier,
    request: pb.OpenEscalationRequest,
    now: datetime,
) -> pb.OpenEscalationResponse:
    """A new OPEN escalation with its audit entry: the visitor's (bound to the customer of
    their verified assertion) or the bot's anonymous hand-off (no assertion); a presented
    assertion that does not verify is UNAUTHENTICATED. ``request`` is validated."""
    assertion = await _presented_assertion(verifier, request)
    contact_id = customer = ""
    details = request.details
    if assertion is not None:
        contact_id, customer = assertion.contact_id, assertion.stripe_customer_id
        claimed = details.stripe_customer_id
        if claimed and claimed != customer:
            raise errors.invalid_argument(
                errors.FieldViolation(
                    "details.stripe_customer_id", "is not the assertion's customer"
                )
            )
        details = pb.ActionDetails()
        details.CopyFrom(request.details)
        details.stripe_customer_id = customer
    action = convert.ACTION_FROM_PB.get(request.action)
    # Set when this call opened it (not a replay): counted once the transaction committed.
    opened: list[bool] = []

    async def open_escalation(connection: Connection) -> pb.OpenEscalationResponse:
        record = await escalation_store.insert_escalation(
            connection,
            request.workspace_id,
            ids.new_id("esc"),
            contact_id=contact_id,
            stripe_customer_id=customer,
            action=action.value if action else "",
            details=convert.to_json(details),
            context=convert.to_json(request.context),
            reason=request.reason,
            now=now,
        )
        await audit_log.record(
            connection,
            uses.audit_keys,
            request.workspace_id,
            [
                entries.entry(
                    now,
                    "escalation.opened",
                    actor=("visitor", contact_id) if contact_id else ("bot", ""),
                    contact_id=contact_id,
                    customer=customer,
                    action=action,
                    details=convert.details_from_pb(details),
                    outcome=request.reason,
                    subject_id=record.escalation_id,
                )
            ],
        )
        opened.append(True)
        return pb.OpenEscalationResponse(escalation=convert.escalation_pb(record))

    response = await idempotency.run_once(
        uses.pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.OpenEscalationResponse,
        open_escalation,
        # A retried hand-off comes with a freshly issued assertion of the same visitor.
        principal=f"{contact_id}:{customer}" if assertion is not None else None,
    )
    if opened:
        policy_metrics.count_escalation_opened(action.value if action else "")
    return response


async def get_escalation(
    pool: asyncpg.Pool, request: pb.GetEscalationRequest
) -> pb.GetEscalationResponse:
    """One escalation; NOT_FOUND when the workspace has none of that id."""
    async with pool.acquire() as connection:
        record = await escalation_store.get_escalation(
            connection, request.workspace_id, request.escalation_id
        )
    if record is None:
        raise errors.not_found("escalation")
    return pb.GetEscalationResponse(escalation=convert.escalation_pb(record))


def _page_size(requested: int) -> int:
    if requested <= 0:
        return _DEFAULT_PAGE
    return min(requested, _MAX_PAGE)


async def list_escalations(
    pool: asyncpg.Pool, request: pb.ListEscalationsRequest
) -> pb.ListEscalationsResponse:
    """A page of the workspace's escalations, newest (or oldest) first, by state."""
    after: tuple[datetime, str] | None = None
    if request.page_token:
        try:
            stamp, _, escalation_id = (
                base64.urlsafe_b64decode(request.page_token.encode()).decode().partition("|")
            )
            after = (datetime.fromisoformat(stamp), escalation_id)
        except (ValueError, binascii.Error):
            raise errors.invalid_argument(
                errors.FieldViolation("page_token", "is not a page token")
            ) from None
    size = _page_size(request.page_size)
    async with pool.acquire() as connection:
        records = await escalation_store.list_escalations(
            connection,
            request.workspace_id,
            convert.ESCALATION_STATE_FROM_PB.get(request.state, ""),
            after,
            size + 1,
            oldest_first=request.oldest_first,
        )
    token = ""
    if len(records) > size:
        records = records[:size]
        last = records[-1]
        token = base64.urlsafe_b64encode(
            f"{last.created_at.isoformat()}|{last.escalation_id}".encode()
        ).decode()
    return pb.ListEscalationsResponse(
        escalations=[convert.escalation_pb(r) for r in records], next_page_token=token
    )


async def approve(
    uses: Escalations, request: pb.ApproveEscalationRequest, admin: str, now: datetime
) -> pb.ApproveEscalationResponse:
    """OPEN -> APPROVED, with a grant for exactly the escalated action when it names one of a
    verified visitor's customer. The grant reserves on the same counters a visitor's would
    (without a limit: the admin decided) and lives ``approval_grant_ttl``."""
    workspace_id = request.workspace_id
    decided_now: list[bool] = []

    async def effect(connection: Connection) -> pb.ApproveEscalationResponse:
        record = await _open(connection, workspace_id, request.escalation_id)
        escalated = convert.escalation_pb(record)
        details = convert.details_from_pb(escalated.details)
        action = convert.ACTION_FROM_PB.get(escalated.action)
        grant: grant_store.GrantRecord | None = None
        # A grant only for a verified visitor and a complete action: an anonymous
        # hand-off or a plain "talk to a human" is approved without one.
        if (
            action is not None
            and record.contact_id
            and record.stripe_customer_id
            and details.stripe_customer_id == record.stripe_customer_id
            and not decisions.details_problem(action, details, now)
        ):
            in_force = await uses.cases.bounds(connection, workspace_id)
            reservation = decisions.approval_reservation(action, details, in_force, now)
            if reservation is not None:
                await grant_store.reserve(
                    connection,
                    workspace_id,
                    customer_id=record.stripe_customer_id,
                    contact_id=record.contact_id,
                    reservation=reservation,
                )
            grant = await grant_store.insert_grant(
                connection,
                workspace_id,
                ids.new_id("gr"),
                record.contact_id,
                action,
                details,
                expires_at=now + uses.approval_grant_ttl,
                now=now,
                cancellation_grace=(
                    in_force.cancellation_grace if action is Action.CANCEL_SUBSCRIPTION else None
                ),
                reservation=reservation,
                escalation_id=record.escalation_id,
            )
        decided = await escalation_store.decide_escalation(
            connection,
            workspace_id,
            record.escalation_id,
            state="approved",
            now=now,
            decided_by=admin,
            note="",
            grant_id=grant.grant.grant_id if grant else "",
        )
        recorded = [
            entries.entry(
                now,
                "escalation.approved",
                actor=("admin", admin),
                contact_id=record.contact_id,
                customer=record.stripe_customer_id,
                action=action,
                details=details,
                outcome="APPROVED",
                subject_id=record.escalation_id,
            )
        ]
        if grant is not None:
            recorded.append(
                entries.entry(
                    now,
                    "decision",
                    actor=("admin", admin),
                    contact_id=record.contact_id,
                    customer=record.stripe_customer_id,
                    action=action,
                    details=details,
                    outcome=f"ALLOW:{Reason.ESCALATION_APPROVED.value}",
                    subject_id=grant.grant.grant_id,
                )
            )
        await audit_log.record(connection, uses.audit_keys, workspace_id, recorded)
        decided_now.append(True)
        return pb.ApproveEscalationResponse(
            escalation=convert.escalation_pb(decided),
            grant=convert.grant_pb(grant) if grant else None,
        )

    response = await idempotency.run_once(
        uses.pool,
        workspace_id,
        request.idempotency_key,
        request,
        pb.ApproveEscalationResponse,
        effect,
    )
    if decided_now:
        policy_metrics.count_escalation_decided("approved")
    return response


async def reject(
    uses: Escalations, request: pb.RejectEscalationRequest, admin: str, now: datetime
) -> pb.RejectEscalationResponse:
    """OPEN -> REJECTED, keeping the admin's note (what the customer is told)."""
    decided_now: list[bool] = []

    async def effect(connection: Connection) -> pb.RejectEscalationResponse:
        record = await _open(connection, request.workspace_id, request.escalation_id)
        decided = await escalation_store.decide_escalation(
            connection,
            request.workspace_id,
            record.escalation_id,
            state="rejected",
            now=now,
            decided_by=admin,
            note=request.note,
            grant_id="",
        )
        await audit_log.record(
            connection,
            uses.audit_keys,
            request.workspace_id,
            [
                entries.entry(
                    now,
                    "escalation.rejected",
                    actor=("admin", admin),
                    contact_id=record.contact_id,
                    customer=record.stripe_customer_id,
                    action=Action(record.action) if record.action else None,
                    outcome="REJECTED",
                    subject_id=record.escalation_id,
                )
            ],
        )
        decided_now.append(True)
        return pb.RejectEscalationResponse(escalation=convert.escalation_pb(decided))

    response = await idempotency.run_once(
        uses.pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.RejectEscalationResponse,
        effect,
    )
    if decided_now:
        policy_metrics.count_escalation_decided("rejected")
    return response


def outcome_problem(request: pb.RecordEscalationOutcomeRequest) -> str:
    """What is wrong with a reported outcome, or ""."""
    if request.state not in _OUTCOMES:
        return "state must be EXECUTED or FAILED"
    if request.state == pb.ESCALATION_STATE_EXECUTED and not request.stripe_object_id:
        return "an executed escalation names the Stripe object it produced"
    if request.state == pb.ESCALATION_STATE_FAILED and not request.failure_reason:
        return "a failed escalation names why nothing moved"
    return ""


async def record_outcome(
    uses: Escalations, request: pb.RecordEscalationOutcomeRequest, now: datetime
) -> pb.RecordEscalationOutcomeResponse:
    """APPROVED -> EXECUTED | FAILED. The same outcome reported again (whatever the key)
    returns the escalation as it is; any other transition is FAILED_PRECONDITION."""
    state = _OUTCOMES[request.state]
    object_id = request.stripe_object_id if state == "executed" else ""
    failure = request.failure_reason if state == "failed" else ""

    async def effect(connection: Connection) -> pb.RecordEscalationOutcomeResponse:
        record = await _locked(connection, request.workspace_id, request.escalation_id)
        if (record.state, record.stripe_object_id, record.failure_reason) == (
            state,
            object_id,
            failure,
        ):
            return pb.RecordEscalationOutcomeResponse(escalation=convert.escalation_pb(record))
        if record.state != "approved":
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "ESCALATION_NOT_APPROVED"
                if record.state in ("open", "rejected")
                else "OUTCOME_ALREADY_RECORDED",
                f"the escalation is {record.state}; only an approved one takes an outcome",
                metadata={"state": record.state},
            )
        finished = await escalation_store.finish_escalation(
            connection,
            request.workspace_id,
            record.escalation_id,
            state=state,
            stripe_object_id=object_id,
            failure_reason=failure,
            now=now,
        )
        details = convert.details_from_pb(convert.escalation_pb(record).details)
        await audit_log.record(
            connection,
            uses.audit_keys,
            request.workspace_id,
            [
                entries.entry(
                    now,
                    f"escalation.{state}",
                    # Carried out on the approver's authority: the audit names them.
                    actor=("admin", record.decided_by),
                    contact_id=record.contact_id,
                    customer=record.stripe_customer_id,
                    action=Action(record.action) if record.action else None,
                    details=details,
                    outcome=(
                        f"EXECUTED:{object_id}" if state == "executed" else f"FAILED:{failure}"
                    ),
                    subject_id=record.escalation_id,
                )
            ],
        )
        return pb.RecordEscalationOutcomeResponse(escalation=convert.escalation_pb(finished))

    return await idempotency.run_once(
        uses.pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.RecordEscalationOutcomeResponse,
        effect,
    )
