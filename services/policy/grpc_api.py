"""Policy's gRPC layer: validates and maps messages; the rules live in ``domain``, the
Authorize use case in ``deciding`` and the calls on a grant in ``resolving``.

Every mutating RPC runs in one transaction with its idempotency key: the decision, the
counters, the grant, the escalation, the audit entries (recorded, and linked into the chain
by ``chaining`` afterwards) and the saved response commit together, so a decision is never
visible without its audit entry and never reserves twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import grpc
from google.protobuf import timestamp_pb2

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import (
    audit_log,
    chaining,
    checkpoints,
    convert,
    deciding,
    entries,
    escalations,
    resolving,
    storage,
    terms,
)
from policy.domain import audit, bounds
from policy.domain.decisions import Reason
from policy.settings import PolicySettings
from runtime import assertions, auth, errors, idempotency, ids
from runtime.database import Connection

Clock = Callable[[], datetime]

_MAX_WORKSPACE_ID = 64
_MAX_ID = 128
_DEFAULT_ESCALATION_PAGE = 50
_MAX_ESCALATION_PAGE = 500
_DEFAULT_AUDIT_PAGE = 100
_MAX_AUDIT_PAGE = 1000
_VERIFY_PAGE = 2000
# Longest quote summary kept (a sentence or a few, not a document).
_MAX_QUOTE_SUMMARY = 4096


class AssertionVerifier(Protocol):
    """Verifies identity assertions (runtime.assertions.Verifier, or a test double)."""

    async def verify(self, token: str, workspace_id: str) -> assertions.Assertion:
        """The assertion's claims, or raises AssertionRefused."""


def _check_workspace(check: errors.Validator, workspace_id: str) -> None:
    check.non_empty(workspace_id, "workspace_id", max_length=_MAX_WORKSPACE_ID)


def _page_size(requested: int, default: int, maximum: int) -> int:
    if requested <= 0:
        return default
    return min(requested, maximum)


def _bad_token() -> errors.ServiceError:
    return errors.invalid_argument(errors.FieldViolation("page_token", "is not a page token"))


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Implements askvault.policy.v1.PolicyService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: PolicySettings,
        verifier: AssertionVerifier,
        clock: Clock,
        defaults: bounds.Bounds,
        audit_keys: audit.MacKeys,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._audit_keys = audit_keys
        self._verifier = verifier
        self._clock = clock
        self._defaults = defaults
        self._grant_ttl = timedelta(seconds=settings.grant_ttl_seconds)
        self._cases = deciding.UseCases(pool, audit_keys, defaults, self._grant_ttl)
        self._escalations = escalations.Escalations(
            pool,
            audit_keys,
            self._cases,
            timedelta(seconds=settings.approval_grant_ttl_seconds),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext, workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _bounds(self, connection: Connection, workspace_id: str) -> bounds.Bounds:
        return await self._cases.bounds(connection, workspace_id)

    # -- decisions -------------------------------------------------------------------------

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(request.action in convert.ACTION_FROM_PB, "action", "a billing action")
        check.require(
            len(request.identity_assertion) <= 8192, "identity_assertion", "at most 8192 chars"
        )
        quote = request.confirmation.quote
        check.require(len(quote.quote_id) <= _MAX_ID, "confirmation.quote.quote_id", "too long")
        check.require(
            len(quote.summary) <= _MAX_QUOTE_SUMMARY, "confirmation.quote.summary", "too long"
        )
        check.require(len(quote.terms_hash) <= 128, "confirmation.quote.terms_hash", "too long")
        check.check()
        idempotency.require_key(request.idempotency_key)
        workspace_id = request.workspace_id
        action = convert.ACTION_FROM_PB[request.action]
        requested = convert.details_from_pb(request.details)
        # Only a claimed yes is looked at (and audited); a quote sent without one is not.
        presented = (
            convert.confirmation_from_pb(request.confirmation)
            if request.confirmed and request.HasField("confirmation")
            else None
        )
        now = self._clock()
        try:
            assertion: assertions.Assertion | None = await self._verifier.verify(
                request.identity_assertion, workspace_id
            )
            refused: Reason | None = None
        except assertions.AssertionRefused as refusal:
            assertion, refused = None, Reason(refusal.reason)

        return await deciding.authorize(
            self._cases,
            deciding.AuthorizeCall(request, action, requested, presented, assertion, refused, now),
        )

    # -- grants ----------------------------------------------------------------------------

    async def Redeem(
        self, request: pb.RedeemRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedeemResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
        check.require(request.action in convert.ACTION_FROM_PB, "action", "a billing action")
        check.check()
        idempotency.require_key(request.idempotency_key)
        action = convert.ACTION_FROM_PB[request.action]
        details = convert.details_from_pb(request.details)
        now = self._clock()

        return await resolving.redeem(self._cases, request, action, details, now)

    async def Commit(
        self, request: pb.CommitRequest, context: grpc.aio.ServicerContext
    ) -> pb.CommitResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
        check.require(len(request.stripe_object_id) <= 255, "stripe_object_id", "too long")
        check.check()
        idempotency.require_key(request.idempotency_key)
        now = self._clock()

        return await resolving.commit(self._cases, request, now)

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
        check.require(len(request.reason) <= 1024, "reason", "at most 1024 characters")
        check.check()
        idempotency.require_key(request.idempotency_key)
        now = self._clock()

        return await resolving.release(self._cases, request, now)

    # -- escalations -----------------------------------------------------------------------

    async def OpenEscalation(
        self, request: pb.OpenEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenEscalationResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.reason, "reason", max_length=64)
        check.require(
            request.action == common_pb2.BILLING_ACTION_UNSPECIFIED
            or request.action in convert.ACTION_FROM_PB,
            "action",
            "a billing action or unspecified",
        )
        check.require(
            len(request.identity_assertion) <= 8192, "identity_assertion", "at most 8192 chars"
        )
        check.check()
        idempotency.require_key(request.idempotency_key)
        contact_id = customer = ""
        details = request.details
        if request.identity_assertion:
            # A presented assertion must verify; an anonymous hand-off sends none.
            try:
                assertion = await self._verifier.verify(
                    request.identity_assertion, request.workspace_id
                )
            except assertions.AssertionRefused as refusal:
                raise errors.ServiceError(
                    errors.Kind.UNAUTHENTICATED, refusal.reason, str(refusal)
                ) from None
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
        now = self._clock()

        async def open_escalation(connection: Connection) -> pb.OpenEscalationResponse:
            record = await storage.insert_escalation(
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
                self._audit_keys,
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
            return pb.OpenEscalationResponse(escalation=convert.escalation_pb(record))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.OpenEscalationResponse,
            open_escalation,
        )

    async def GetEscalation(
        self, request: pb.GetEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEscalationResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        check.check()
        async with self._pool.acquire() as connection:
            record = await storage.get_escalation(
                connection, request.workspace_id, request.escalation_id
            )
        if record is None:
            raise errors.not_found("escalation")
        return pb.GetEscalationResponse(escalation=convert.escalation_pb(record))

    async def ListEscalations(
        self, request: pb.ListEscalationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEscalationsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(
            request.state == pb.ESCALATION_STATE_UNSPECIFIED
            or request.state in convert.ESCALATION_STATE_FROM_PB,
            "state",
            "unknown value",
        )
        check.check()
        after: tuple[datetime, str] | None = None
        if request.page_token:
            try:
                stamp, _, escalation_id = (
                    base64.urlsafe_b64decode(request.page_token.encode()).decode().partition("|")
                )
                after = (datetime.fromisoformat(stamp), escalation_id)
            except (ValueError, binascii.Error):
                raise _bad_token() from None
        size = _page_size(request.page_size, _DEFAULT_ESCALATION_PAGE, _MAX_ESCALATION_PAGE)
        async with self._pool.acquire() as connection:
            records = await storage.list_escalations(
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

    async def ApproveEscalation(
        self, request: pb.ApproveEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveEscalationResponse:
        # The admin's own credential, also when the billing gateway forwards it
        # (CarryOutEscalation): the approver is the person, never the service.
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        check.check()
        idempotency.require_key(request.idempotency_key)
        return await escalations.approve(self._escalations, request, admin, self._clock())

    async def RejectEscalation(
        self, request: pb.RejectEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectEscalationResponse:
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        check.require(len(request.note) <= 2048, "note", "at most 2048 characters")
        check.check()
        idempotency.require_key(request.idempotency_key)
        return await escalations.reject(self._escalations, request, admin, self._clock())

    async def RecordEscalationOutcome(
        self, request: pb.RecordEscalationOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordEscalationOutcomeResponse:
        # Callers: the billing gateway only (PolicyService.allowed_callers).
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        problem = escalations.outcome_problem(request)
        check.require(not problem, "state", problem)
        check.require(len(request.stripe_object_id) <= 255, "stripe_object_id", "too long")
        check.require(len(request.failure_reason) <= 1024, "failure_reason", "too long")
        check.check()
        idempotency.require_key(request.idempotency_key)
        return await escalations.record_outcome(self._escalations, request, self._clock())

    # -- bounds ----------------------------------------------------------------------------

    async def GetBounds(
        self, request: pb.GetBoundsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBoundsResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        async with self._pool.acquire() as connection:
            in_force = await self._bounds(connection, request.workspace_id)
        return pb.GetBoundsResponse(
            bounds=convert.bounds_pb(request.workspace_id, in_force),
            defaults=convert.bounds_pb(request.workspace_id, self._defaults),
        )

    async def GetWorkspaceTerms(
        self, request: pb.GetWorkspaceTermsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWorkspaceTermsResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        return await terms.workspace_terms(self._pool, request.workspace_id, self._defaults)

    async def ProposeBoundsChange(
        self, request: pb.ProposeBoundsChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposeBoundsChangeResponse:
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(request.HasField("bounds"), "bounds", "is required")
        check.require(
            request.bounds.workspace_id in ("", request.workspace_id),
            "bounds.workspace_id",
            "empty or the request's workspace",
        )
        check.require(
            request.bounds.askvault_plan in convert.PLAN_FROM_PB,
            "bounds.askvault_plan",
            "unknown value",
        )
        check.require(
            request.bounds.counter_period == pb.COUNTER_PERIOD_UNSPECIFIED
            or request.bounds.counter_period in convert.PERIOD_FROM_PB,
            "bounds.counter_period",
            "unknown value",
        )
        check.check()
        idempotency.require_key(request.idempotency_key)
        proposed = convert.bounds_from_pb(
            request.bounds, self._defaults.counter_period, self._defaults.time_zone
        )
        bounds.validate(proposed)
        now = self._clock()

        async def propose(connection: Connection) -> pb.ProposeBoundsChangeResponse:
            current = await storage.get_bounds(connection, request.workspace_id)
            loosened = bounds.loosened_fields(proposed, self._defaults, current)
            change = await storage.insert_bounds_change(
                connection,
                request.workspace_id,
                ids.new_id("bc"),
                proposed,
                pending=bool(loosened),
                proposed_by=admin,
                loosened_fields=loosened,
                now=now,
            )
            if not loosened:
                await storage.save_bounds(connection, request.workspace_id, proposed, now)
            await audit_log.record(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    entries.entry(
                        now,
                        "bounds.applied" if not loosened else "bounds.proposed",
                        actor=("admin", admin),
                        outcome="APPLIED" if not loosened else "PENDING:" + ",".join(loosened),
                        subject_id=change.change_id,
                    )
                ],
            )
            return pb.ProposeBoundsChangeResponse(change=convert.change_pb(change))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.ProposeBoundsChangeResponse,
            propose,
        )

    async def ApproveBoundsChange(
        self, request: pb.ApproveBoundsChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveBoundsChangeResponse:
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.change_id, "change_id", max_length=_MAX_ID)
        check.check()
        idempotency.require_key(request.idempotency_key)
        now = self._clock()

        async def approve(connection: Connection) -> pb.ApproveBoundsChangeResponse:
            change = await storage.get_bounds_change_for_update(
                connection, request.workspace_id, request.change_id
            )
            if change is None:
                raise errors.not_found("bounds change")
            if change.state != "pending":
                raise errors.ServiceError(
                    errors.Kind.FAILED_PRECONDITION,
                    "NOT_PENDING",
                    f"the change is already {change.state}",
                )
            if change.proposed_by == admin:
                raise errors.ServiceError(
                    errors.Kind.PERMISSION_DENIED,
                    "SECOND_ADMIN_REQUIRED",
                    "a second, different admin must approve this change",
                )
            applied = await storage.apply_bounds_change(
                connection, request.workspace_id, request.change_id, admin, now
            )
            await storage.save_bounds(connection, request.workspace_id, applied.proposed, now)
            await audit_log.record(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    entries.entry(
                        now,
                        "bounds.applied",
                        actor=("admin", admin),
                        outcome="APPROVED:" + ",".join(applied.loosened_fields),
                        subject_id=applied.change_id,
                    )
                ],
            )
            return pb.ApproveBoundsChangeResponse(change=convert.change_pb(applied))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.ApproveBoundsChangeResponse,
            approve,
        )

    async def ListBoundsChanges(
        self, request: pb.ListBoundsChangesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBoundsChangesResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(
            request.state == pb.BOUNDS_CHANGE_STATE_UNSPECIFIED
            or request.state in convert.CHANGE_STATE_FROM_PB,
            "state",
            "unknown value",
        )
        check.check()
        async with self._pool.acquire() as connection:
            records = await storage.list_bounds_changes(
                connection,
                request.workspace_id,
                convert.CHANGE_STATE_FROM_PB.get(request.state, ""),
            )
        return pb.ListBoundsChangesResponse(changes=[convert.change_pb(r) for r in records])

    # -- audit -----------------------------------------------------------------------------

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(
            request.action == common_pb2.BILLING_ACTION_UNSPECIFIED
            or request.action in convert.ACTION_FROM_PB,
            "action",
            "unknown value",
        )
        check.require(len(request.stripe_customer_id) <= 255, "stripe_customer_id", "too long")
        check.require(len(request.actor_id) <= 255, "actor_id", "too long")
        check.require(
            request.page_token == "" or request.page_token.isdigit(),
            "page_token",
            "is not a page token",
        )
        check.check()
        action = convert.ACTION_FROM_PB.get(request.action)
        where = audit_log.AuditFilter(
            contact_id=request.contact_id,
            action=action.value if action else "",
            start_time=(
                request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
            ),
            end_time=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
            stripe_customer_id=request.stripe_customer_id,
            actor_id=request.actor_id,
        )
        size = _page_size(request.page_size, _DEFAULT_AUDIT_PAGE, _MAX_AUDIT_PAGE)
        after = int(request.page_token or "0")
        # Everything recorded before this call is in the chain before it is read.
        await chaining.chain_now(self._pool, self._audit_keys, request.workspace_id)
        async with self._pool.acquire() as connection:
            events = await audit_log.list_audit_events(
                connection, request.workspace_id, where, after, size + 1
            )
        token = ""
        if len(events) > size:
            events = events[:size]
            token = str(events[-1].sequence)
        return pb.ListAuditEventsResponse(
            events=[convert.audit_event_pb(e) for e in events], next_page_token=token
        )

    async def VerifyAuditChain(
        self, request: pb.VerifyAuditChainRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyAuditChainResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        verifier = audit.Verifier(self._audit_keys, request.workspace_id)
        # Everything recorded before this call is linked first; what is recorded later is
        # reported as not yet chained, never passed over in silence.
        await chaining.chain_now(self._pool, self._audit_keys, request.workspace_id)
        # One snapshot: entries appended while we read are not half-seen.
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            head_sequence, head_hash = await audit_log.audit_head(connection, request.workspace_id)
            after = 0
            while True:
                page = await audit_log.audit_chain_page(
                    connection, request.workspace_id, after, _VERIFY_PAGE
                )
                for stored in page:
                    if not verifier.feed(stored):
                        break
                if verifier.broken is not None or len(page) < _VERIFY_PAGE:
                    break
                after = page[-1].sequence
            waiting = await chaining.unchained(connection, self._audit_keys, request.workspace_id)
        result = chaining.with_unchained(verifier.finish(head_sequence, head_hash), waiting)
        return pb.VerifyAuditChainResponse(
            intact=result.intact,
            checked=result.checked,
            first_broken_sequence=result.first_broken_sequence,
            problem=result.problem,
            unsigned_entries=result.unsigned,
            unchained_entries=waiting.waiting,
        )

    async def VerifyAuditCheckpoint(
        self, request: pb.VerifyAuditCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyAuditCheckpointResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(bool(request.checkpoint), "checkpoint", "is required")
        check.check()
        try:
            checkpoint = audit.open_checkpoint(self._audit_keys, request.checkpoint)
        except audit.CheckpointError as error:
            raise errors.ServiceError(
                errors.Kind.INVALID_ARGUMENT, "AUDIT_CHECKPOINT_INVALID", str(error)
            ) from None
        if checkpoint.workspace_id != request.workspace_id:
            raise errors.ServiceError(
                errors.Kind.INVALID_ARGUMENT,
                "AUDIT_CHECKPOINT_INVALID",
                "the checkpoint is of another workspace",
            )
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            result = await checkpoints.check_checkpoint(connection, self._audit_keys, checkpoint)
        taken_at = timestamp_pb2.Timestamp()
        taken_at.FromDatetime(checkpoint.taken_at)
        return pb.VerifyAuditCheckpointResponse(
            contained=result.contained,
            sequence=checkpoint.sequence,
            checkpoint_hash=checkpoint.hash,
            stored_hash=result.stored_hash,
            taken_at=taken_at,
            problem=result.problem,
        )
