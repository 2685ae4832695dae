"""Policy's gRPC layer: checks callers, validates and maps messages; the rules live in
``domain``, the use cases in their modules: Authorize in ``deciding``, the calls on a grant in
``resolving``, escalations in ``escalations``, bounds changes in ``bounds_changes``, the audit
log's reads in ``audit_reads`` and a workspace's terms in ``terms``.

Every mutating RPC runs in one transaction with its idempotency key: the decision, the
counters, the grant, the escalation, the audit entries (recorded, and linked into the chain
by ``chaining`` afterwards) and the saved response commit together, so a decision is never
visible without its audit entry and never reserves twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import grpc

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import (
    audit_reads,
    bounds_changes,
    convert,
    deciding,
    escalations,
    resolving,
    terms,
)
from policy.domain import audit, bounds
from policy.domain.decisions import Reason
from policy.settings import PolicySettings
from runtime import assertions, auth, errors, idempotency, service_auth

Clock = Callable[[], datetime]

_MAX_WORKSPACE_ID = 64
_MAX_ID = 128
# Longest quote summary kept (a sentence or a few, not a document).
_MAX_QUOTE_SUMMARY = 4096


class AssertionVerifier(Protocol):
    """Verifies identity assertions (runtime.assertions.Verifier, or a test double)."""

    async def verify(self, token: str, workspace_id: str) -> assertions.Assertion:
        """The assertion's claims, or raises AssertionRefused."""


def _check_workspace(check: errors.Validator, workspace_id: str) -> None:
    check.non_empty(workspace_id, "workspace_id", max_length=_MAX_WORKSPACE_ID)


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

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    # -- decisions -------------------------------------------------------------------------

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self, request: pb.RedeemRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self, request: pb.CommitRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self, request: pb.OpenEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        assertion = None
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
        return await escalations.open_escalation(
            self._escalations, request, assertion, self._clock()
        )

    async def GetEscalation(
        self, request: pb.GetEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetEscalationResponse:
        if service_auth.called_by_admin():
            await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        check.check()
        return await escalations.get_escalation(self._pool, request)

    async def ListEscalations(
        self, request: pb.ListEscalationsRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        return await escalations.list_escalations(self._pool, request)

    async def ApproveEscalation(
        self, request: pb.ApproveEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self, request: pb.RejectEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        self,
        request: pb.RecordEscalationOutcomeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
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
        self, request: pb.GetBoundsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBoundsResponse:
        if service_auth.called_by_admin():
            await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        async with self._pool.acquire() as connection:
            in_force = await self._cases.bounds(connection, request.workspace_id)
        return pb.GetBoundsResponse(
            bounds=convert.bounds_pb(request.workspace_id, in_force),
            defaults=convert.bounds_pb(request.workspace_id, self._defaults),
        )

    async def GetWorkspaceTerms(
        self, request: pb.GetWorkspaceTermsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWorkspaceTermsResponse:
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        return await terms.workspace_terms(self._pool, request.workspace_id, self._defaults)

    async def ProposeBoundsChange(
        self, request: pb.ProposeBoundsChangeRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        return await bounds_changes.propose(
            self._pool,
            self._audit_keys,
            request,
            proposed=proposed,
            defaults=self._defaults,
            admin=admin,
            now=self._clock(),
        )

    async def ApproveBoundsChange(
        self, request: pb.ApproveBoundsChangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ApproveBoundsChangeResponse:
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.change_id, "change_id", max_length=_MAX_ID)
        check.check()
        idempotency.require_key(request.idempotency_key)
        return await bounds_changes.approve(
            self._pool, self._audit_keys, request, admin=admin, now=self._clock()
        )

    async def ListBoundsChanges(
        self, request: pb.ListBoundsChangesRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        return await bounds_changes.list_changes(self._pool, request)

    # -- audit -----------------------------------------------------------------------------

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
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
        return await audit_reads.list_events(self._pool, self._audit_keys, request)

    async def VerifyAuditChain(
        self, request: pb.VerifyAuditChainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyAuditChainResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.check()
        return await audit_reads.verify_chain(self._pool, self._audit_keys, request.workspace_id)

    async def VerifyAuditCheckpoint(
        self, request: pb.VerifyAuditCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyAuditCheckpointResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.require(bool(request.checkpoint), "checkpoint", "is required")
        check.check()
        return await audit_reads.verify_checkpoint(self._pool, self._audit_keys, request)
