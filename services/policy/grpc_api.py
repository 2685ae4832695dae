"""Policy's gRPC layer: checks callers and maps messages and errors; each request's checks
live in ``request_checks``, the rules in ``domain``, the use cases in their modules:
Authorize in ``deciding``, the calls on a grant in ``resolving``, escalations in
``escalations``, the bounds' reads in ``bounds_reads`` and their changes in
``bounds_changes``, the audit log's reads in ``audit_reads``.

Every mutating RPC runs in one transaction with its idempotency key: the decision, the
counters, the grant, the escalation, the audit entries (recorded, and linked into the chain
by ``chaining`` afterwards) and the saved response commit together, so a decision is never
visible without its audit entry and never reserves twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc

from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import (
    audit_reads,
    bounds_changes,
    bounds_reads,
    convert,
    deciding,
    escalations,
    request_checks,
    resolving,
)
from policy.domain import audit, bounds
from policy.settings import PolicySettings
from runtime import auth, service_auth

Clock = Callable[[], datetime]
Context = grpc.aio.ServicerContext[Any, Any]


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Implements askvault.policy.v1.PolicyService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: PolicySettings,
        verifier: deciding.AssertionVerifier,
        clock: Clock,
        defaults: bounds.Bounds,
        audit_keys: audit.MacKeys,
    ) -> None:
        self._pool = pool
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._audit_keys = audit_keys
        self._verifier = verifier
        self._clock = clock
        self._defaults = defaults
        grant_ttl = timedelta(seconds=settings.grant_ttl_seconds)
        self._cases = deciding.UseCases(pool, audit_keys, defaults, grant_ttl)
        self._escalations = escalations.Escalations(
            pool,
            audit_keys,
            self._cases,
            timedelta(seconds=settings.approval_grant_ttl_seconds),
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: Context, workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _admin_if_one_calls(self, context: Context, workspace_id: str) -> None:
        """An admin's call must carry their credential; a service's was checked already."""
        if service_auth.called_by_admin():
            await self._admin(context, workspace_id)

    # -- decisions -------------------------------------------------------------------------

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: Context
    ) -> pb.AuthorizeResponse:
        request_checks.authorize(request)
        return await deciding.authorize(self._cases, self._verifier, request, self._clock())

    # -- grants ----------------------------------------------------------------------------

    async def Redeem(self, request: pb.RedeemRequest, context: Context) -> pb.RedeemResponse:
        request_checks.redeem(request)
        action = convert.ACTION_FROM_PB[request.action]
        details = convert.details_from_pb(request.details)
        return await resolving.redeem(self._cases, request, action, details, self._clock())

    async def Commit(self, request: pb.CommitRequest, context: Context) -> pb.CommitResponse:
        request_checks.commit(request)
        return await resolving.commit(self._cases, request, self._clock())

    async def Release(self, request: pb.ReleaseRequest, context: Context) -> pb.ReleaseResponse:
        request_checks.release(request)
        return await resolving.release(self._cases, request, self._clock())

    # -- escalations -----------------------------------------------------------------------

    async def OpenEscalation(
        self, request: pb.OpenEscalationRequest, context: Context
    ) -> pb.OpenEscalationResponse:
        request_checks.open_escalation(request)
        return await escalations.open_escalation(
            self._escalations, self._verifier, request, self._clock()
        )

    async def GetEscalation(
        self, request: pb.GetEscalationRequest, context: Context
    ) -> pb.GetEscalationResponse:
        await self._admin_if_one_calls(context, request.workspace_id)
        request_checks.get_escalation(request)
        return await escalations.get_escalation(self._pool, request)

    async def ListEscalations(
        self, request: pb.ListEscalationsRequest, context: Context
    ) -> pb.ListEscalationsResponse:
        await self._admin(context, request.workspace_id)
        request_checks.list_escalations(request)
        return await escalations.list_escalations(self._pool, request)

    async def ApproveEscalation(
        self, request: pb.ApproveEscalationRequest, context: Context
    ) -> pb.ApproveEscalationResponse:
        # The admin's own credential, also when the billing gateway forwards it
        # (CarryOutEscalation): the approver is the person, never the service.
        admin = await self._admin(context, request.workspace_id)
        request_checks.approve_escalation(request)
        return await escalations.approve(self._escalations, request, admin, self._clock())

    async def RejectEscalation(
        self, request: pb.RejectEscalationRequest, context: Context
    ) -> pb.RejectEscalationResponse:
        admin = await self._admin(context, request.workspace_id)
        request_checks.reject_escalation(request)
        return await escalations.reject(self._escalations, request, admin, self._clock())

    async def RecordEscalationOutcome(
        self, request: pb.RecordEscalationOutcomeRequest, context: Context
    ) -> pb.RecordEscalationOutcomeResponse:
        # Callers: the billing gateway only (PolicyService.allowed_callers).
        request_checks.record_escalation_outcome(request)
        return await escalations.record_outcome(self._escalations, request, self._clock())

    # -- bounds ----------------------------------------------------------------------------

    async def GetBounds(
        self, request: pb.GetBoundsRequest, context: Context
    ) -> pb.GetBoundsResponse:
        await self._admin_if_one_calls(context, request.workspace_id)
        request_checks.workspace(request.workspace_id)
        return await bounds_reads.get_bounds(self._cases, request.workspace_id)

    async def GetWorkspaceTerms(
        self, request: pb.GetWorkspaceTermsRequest, context: Context
    ) -> pb.GetWorkspaceTermsResponse:
        request_checks.workspace(request.workspace_id)
        return await bounds_reads.workspace_terms(self._cases, request.workspace_id)

    async def ProposeBoundsChange(
        self, request: pb.ProposeBoundsChangeRequest, context: Context
    ) -> pb.ProposeBoundsChangeResponse:
        admin = await self._admin(context, request.workspace_id)
        request_checks.propose_bounds_change(request)
        return await bounds_changes.propose(
            self._pool,
            self._audit_keys,
            request,
            defaults=self._defaults,
            admin=admin,
            now=self._clock(),
        )

    async def ApproveBoundsChange(
        self, request: pb.ApproveBoundsChangeRequest, context: Context
    ) -> pb.ApproveBoundsChangeResponse:
        admin = await self._admin(context, request.workspace_id)
        request_checks.approve_bounds_change(request)
        return await bounds_changes.approve(
            self._pool, self._audit_keys, request, admin=admin, now=self._clock()
        )

    async def ListBoundsChanges(
        self, request: pb.ListBoundsChangesRequest, context: Context
    ) -> pb.ListBoundsChangesResponse:
        await self._admin(context, request.workspace_id)
        request_checks.list_bounds_changes(request)
        return await bounds_changes.list_changes(self._pool, request)

    # -- audit -----------------------------------------------------------------------------

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        await self._admin(context, request.workspace_id)
        request_checks.list_audit_events(request)
        return await audit_reads.list_events(self._pool, self._audit_keys, request)

    async def VerifyAuditChain(
        self, request: pb.VerifyAuditChainRequest, context: Context
    ) -> pb.VerifyAuditChainResponse:
        await self._admin(context, request.workspace_id)
        request_checks.workspace(request.workspace_id)
        return await audit_reads.verify_chain(self._pool, self._audit_keys, request.workspace_id)

    async def VerifyAuditCheckpoint(
        self, request: pb.VerifyAuditCheckpointRequest, context: Context
    ) -> pb.VerifyAuditCheckpointResponse:
        await self._admin(context, request.workspace_id)
        request_checks.verify_audit_checkpoint(request)
        return await audit_reads.verify_checkpoint(self._pool, self._audit_keys, request)
