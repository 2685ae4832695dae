"""Policy's gRPC layer: validates and maps messages; the rules live in ``domain``.

Every mutating RPC runs in ``idempotency.run_once``: the decision, the counters, the grant,
the escalation, the audit entries and the saved response commit in one transaction, so a
decision is never visible without its audit entry and never reserves twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import asyncpg
import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import checkpoints, convert, expiry, storage, terms
from policy.domain import audit, bounds, decisions, grants
from policy.domain.decisions import Decision, Reason, Verdict
from policy.domain.model import Action, Confirmation, Details
from policy.settings import PolicySettings
from runtime import assertions, auth, errors, idempotency, ids, quotes
from runtime.database import Connection

Clock = Callable[[], datetime]
ResponseT = TypeVar("ResponseT", bound=Message)

_MAX_WORKSPACE_ID = 64
_MAX_ID = 128
_DEFAULT_ESCALATION_PAGE = 50
_MAX_ESCALATION_PAGE = 500
_DEFAULT_AUDIT_PAGE = 100
_MAX_AUDIT_PAGE = 1000
_VERIFY_PAGE = 2000
# Longest quote summary kept (a sentence or a few, not a document).
_MAX_QUOTE_SUMMARY = 4096
# Who resolves grants: the billing gateway (the mesh authenticates it; the audit names it).
_ENFORCEMENT_POINT = "billing_gateway"
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


class AssertionVerifier(Protocol):
    """Verifies identity assertions (runtime.assertions.Verifier, or a test double)."""

    async def verify(self, token: str, workspace_id: str) -> assertions.Assertion:
        """The assertion's claims, or raises AssertionRefused."""


def _amount(details: Details) -> tuple[int, str]:
    return (details.amount.amount_minor, details.amount.currency) if details.amount else (0, "")


def _entry(
    now: datetime,
    kind: str,
    *,
    actor: tuple[str, str],
    contact_id: str = "",
    customer: str = "",
    action: Action | None = None,
    details: Details | None = None,
    outcome: str = "",
    subject_id: str = "",
    confirmation: Confirmation | None = None,
) -> audit.Entry:
    amount_minor, currency = _amount(details) if details else (0, "")
    return audit.Entry(
        occurred_at=now,
        actor_kind=actor[0],
        actor_id=actor[1],
        kind=kind,
        contact_id=contact_id,
        stripe_customer_id=customer,
        action=action.value if action else "",
        amount_minor=amount_minor,
        currency=currency,
        outcome=outcome,
        subject_id=subject_id,
        confirmation=confirmation,
    )


def _expected_terms_hash(
    request: pb.AuthorizeRequest, contact_id: str, confirmation: Confirmation | None
) -> str:
    """The hash of the terms this request asks for, with the presented quote's summary and
    expiry; "" when there is no quote to hash against."""
    if confirmation is None or confirmation.expires_at is None:
        return ""
    return quotes.terms_hash(
        workspace_id=request.workspace_id,
        contact_id=contact_id,
        action=request.action,
        details=request.details.SerializeToString(deterministic=True),
        summary=confirmation.summary,
        expires_at=confirmation.expires_at,
    )


def _grant_entry(
    now: datetime, kind: str, record: storage.GrantRecord, outcome: str
) -> audit.Entry:
    grant = record.grant
    return _entry(
        now,
        kind,
        actor=("service", _ENFORCEMENT_POINT),
        contact_id=grant.contact_id,
        customer=grant.details.stripe_customer_id,
        action=grant.action,
        details=grant.details,
        outcome=outcome,
        subject_id=grant.grant_id,
    )


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

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext, workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _bounds(self, connection: Connection, workspace_id: str) -> bounds.Bounds:
        stored = await storage.get_bounds(connection, workspace_id)
        return stored or bounds.for_unknown_workspace(self._defaults)

    async def _grant_call(
        self,
        request: Message,
        workspace_id: str,
        grant_id: str,
        key: str,
        response_type: type[ResponseT],
        effect: Callable[[Connection], Awaitable[ResponseT]],
        now: datetime,
        refused_kind: str,
    ) -> ResponseT:
        """run_once for calls on a grant; a due grant is expired (in its own transaction,
        since the call's is rolled back) and the call refused with GRANT_EXPIRED. Every
        refusal of the grant is audited as ``refused_kind``, also in its own transaction."""
        try:
            return await idempotency.run_once(
                self._pool, workspace_id, key, request, response_type, effect
            )
        except grants.GrantDue:
            await expiry.expire_one(self._pool, self._audit_keys, workspace_id, grant_id, now)
            refusal = errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION, "GRANT_EXPIRED", "the grant expired"
            )
            await self._audit_refusal(workspace_id, grant_id, refused_kind, refusal, now)
            raise refusal from None
        except errors.ServiceError as error:
            if error.reason in _GRANT_REFUSALS:
                await self._audit_refusal(workspace_id, grant_id, refused_kind, error, now)
            raise

    async def _audit_refusal(
        self,
        workspace_id: str,
        grant_id: str,
        kind: str,
        refusal: errors.ServiceError,
        now: datetime,
    ) -> None:
        """Audits a refused call on a grant with the grant's parameters (just its id when
        there is no such grant); the grant itself is left as it was."""
        outcome = f"REFUSED:{refusal.reason}"
        async with self._pool.acquire() as connection, connection.transaction():
            record = await storage.get_grant_for_update(connection, workspace_id, grant_id)
            entry = (
                _grant_entry(now, kind, record, outcome)
                if record is not None
                else _entry(
                    now,
                    kind,
                    actor=("service", _ENFORCEMENT_POINT),
                    outcome=outcome,
                    subject_id=grant_id,
                )
            )
            await storage.append_audit(connection, self._audit_keys, workspace_id, [entry])

    async def _locked_grant(
        self, connection: Connection, workspace_id: str, grant_id: str
    ) -> storage.GrantRecord:
        record = await storage.get_grant_for_update(connection, workspace_id, grant_id)
        if record is None:
            raise errors.not_found("grant", reason="GRANT_INVALID")
        return record

    async def _reserve_grant(
        self,
        connection: Connection,
        workspace_id: str,
        contact_id: str,
        action: Action,
        details: Details,
        cancellation_grace: timedelta,
        reservation: decisions.Reservation | None,
        now: datetime,
        escalation_id: str = "",
    ) -> storage.GrantRecord:
        return await storage.insert_grant(
            connection,
            workspace_id,
            ids.new_id("gr"),
            contact_id,
            action,
            details,
            expires_at=now + self._grant_ttl,
            now=now,
            cancellation_grace=(
                cancellation_grace if action is Action.CANCEL_SUBSCRIPTION else None
            ),
            reservation=reservation,
            escalation_id=escalation_id,
        )

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

        async def decide(connection: Connection) -> pb.AuthorizeResponse:
            if assertion is None:
                assert refused is not None
                await storage.append_audit(
                    connection,
                    self._audit_keys,
                    workspace_id,
                    [
                        _entry(
                            now,
                            "decision",
                            actor=("bot", ""),
                            customer=requested.stripe_customer_id,
                            action=action,
                            details=requested,
                            outcome=f"DENY:{refused.value}",
                        )
                    ],
                )
                return pb.AuthorizeResponse(
                    decision=pb.DECISION_DENY,
                    reason=pb.DecisionReason.Value(f"DECISION_REASON_{refused.value}"),
                )
            in_force = await self._bounds(connection, workspace_id)
            decision = decisions.decide(
                action,
                requested,
                in_force,
                assertion_customer=assertion.stripe_customer_id,
                confirmed=request.confirmed,
                confirmation=presented,
                expected_terms_hash=_expected_terms_hash(request, assertion.contact_id, presented),
                now=now,
            )
            return await self._carry_out(
                connection, request, assertion, decision, in_force, presented, now
            )

        return await idempotency.run_once(
            self._pool, workspace_id, request.idempotency_key, request, pb.AuthorizeResponse, decide
        )

    async def _carry_out(
        self,
        connection: Connection,
        request: pb.AuthorizeRequest,
        assertion: assertions.Assertion,
        decision: Decision,
        in_force: bounds.Bounds,
        presented: Confirmation | None,
        now: datetime,
    ) -> pb.AuthorizeResponse:
        """Reserves, issues the grant or opens the escalation, audits; the response."""
        workspace_id = request.workspace_id
        contact_id = assertion.contact_id
        customer_id = assertion.stripe_customer_id
        action = convert.ACTION_FROM_PB[request.action]
        reservation = decision.reservation
        usage: decisions.Usage | None = None
        if reservation is not None and decision.verdict is Verdict.ALLOW:
            fits, used = await storage.reserve(
                connection,
                workspace_id,
                customer_id=customer_id,
                contact_id=contact_id,
                reservation=reservation,
            )
            _, usage = decisions.bound_usage(
                reservation, used, pending=0 if fits else reservation.quantity
            )
            if not fits:
                decision = decisions.over_limit(decision)
        elif reservation is not None:
            used = await storage.counters_used(
                connection,
                workspace_id,
                customer_id=customer_id,
                contact_id=contact_id,
                reservation=reservation,
            )
            over, usage = decisions.bound_usage(reservation, used, pending=reservation.quantity)
            if decision.verdict is Verdict.NEEDS_CONFIRMATION and over:
                # Already beyond a bound: say so now rather than ask for a "yes" that
                # could only end in a refusal. (The reservation on "yes" stays the check
                # that counts; this one only spares the visitor a pointless confirmation.)
                decision = decisions.over_limit(decision)
        response = pb.AuthorizeResponse(
            decision=convert.VERDICT_TO_PB[decision.verdict],
            reason=pb.DecisionReason.Value(f"DECISION_REASON_{decision.reason.value}"),
            usage=convert.usage_pb(usage) if usage else None,
            refund_window=convert.duration(in_force.refund_window),
        )
        customer = decision.details.stripe_customer_id or assertion.stripe_customer_id
        subject_id = ""
        entries: list[audit.Entry] = []
        if decision.verdict is Verdict.ALLOW:
            record = await self._reserve_grant(
                connection,
                workspace_id,
                contact_id,
                action,
                decision.details,
                in_force.cancellation_grace,
                reservation,
                now,
            )
            response.grant.CopyFrom(convert.grant_pb(record))
            subject_id = record.grant.grant_id
        if decision.escalate:
            escalation = await storage.insert_escalation(
                connection,
                workspace_id,
                ids.new_id("esc"),
                contact_id=contact_id,
                stripe_customer_id=assertion.stripe_customer_id,
                action=action.value,
                details=convert.to_json(convert.details_pb(decision.details)),
                context=convert.to_json(request.context),
                reason=decision.reason.value,
                now=now,
            )
            response.escalation_id = escalation.escalation_id
            subject_id = escalation.escalation_id
        visitor = ("visitor", contact_id)
        entries.append(
            _entry(
                now,
                "decision",
                actor=visitor,
                contact_id=contact_id,
                customer=customer,
                action=action,
                details=decision.details,
                outcome=f"{decision.verdict.value}:{decision.reason.value}",
                subject_id=subject_id,
                confirmation=presented,
            )
        )
        if decision.escalate:
            entries.append(
                _entry(
                    now,
                    "escalation.opened",
                    actor=visitor,
                    contact_id=contact_id,
                    customer=customer,
                    action=action,
                    details=decision.details,
                    outcome=decision.reason.value,
                    subject_id=subject_id,
                )
            )
        await storage.append_audit(connection, self._audit_keys, workspace_id, entries)
        return response

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

        async def redeem(connection: Connection) -> pb.RedeemResponse:
            record = await self._locked_grant(connection, request.workspace_id, request.grant_id)
            in_force = await self._bounds(connection, request.workspace_id)
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
            redeemed = await storage.redeem_grant(
                connection, request.workspace_id, request.grant_id, request.idempotency_key, now
            )
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [_grant_entry(now, "grant.redeemed", redeemed, "REDEEMED")],
            )
            return pb.RedeemResponse(grant=convert.grant_pb(redeemed))

        return await self._grant_call(
            request,
            request.workspace_id,
            request.grant_id,
            request.idempotency_key,
            pb.RedeemResponse,
            redeem,
            now,
            "grant.redeem_refused",
        )

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

        async def commit(connection: Connection) -> pb.CommitResponse:
            record = await self._locked_grant(connection, request.workspace_id, request.grant_id)
            grants.check_resolve(record.grant, now)
            committed = await storage.commit_grant(
                connection, request.workspace_id, request.grant_id, request.stripe_object_id, now
            )
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [_grant_entry(now, "grant.committed", committed, "COMMITTED")],
            )
            return pb.CommitResponse(grant=convert.grant_pb(committed))

        return await self._grant_call(
            request,
            request.workspace_id,
            request.grant_id,
            request.idempotency_key,
            pb.CommitResponse,
            commit,
            now,
            "grant.commit_refused",
        )

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

        async def release(connection: Connection) -> pb.ReleaseResponse:
            record = await self._locked_grant(connection, request.workspace_id, request.grant_id)
            grants.check_resolve(record.grant, now)
            released = await storage.release_grant(connection, record, request.reason, now)
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [_grant_entry(now, "grant.released", released, "RELEASED")],
            )
            return pb.ReleaseResponse(grant=convert.grant_pb(released))

        return await self._grant_call(
            request,
            request.workspace_id,
            request.grant_id,
            request.idempotency_key,
            pb.ReleaseResponse,
            release,
            now,
            "grant.release_refused",
        )

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
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    _entry(
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

    async def _decide_escalation(
        self, connection: Connection, workspace_id: str, escalation_id: str
    ) -> storage.EscalationRecord:
        record = await storage.get_escalation(
            connection, workspace_id, escalation_id, for_update=True
        )
        if record is None:
            raise errors.not_found("escalation")
        if record.state != "open":
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "NOT_PENDING",
                f"the escalation is already {record.state}",
            )
        return record

    async def ApproveEscalation(
        self, request: pb.ApproveEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveEscalationResponse:
        admin = await self._admin(context, request.workspace_id)
        check = errors.Validator()
        _check_workspace(check, request.workspace_id)
        check.non_empty(request.escalation_id, "escalation_id", max_length=_MAX_ID)
        check.check()
        idempotency.require_key(request.idempotency_key)
        now = self._clock()
        workspace_id = request.workspace_id

        async def approve(connection: Connection) -> pb.ApproveEscalationResponse:
            record = await self._decide_escalation(connection, workspace_id, request.escalation_id)
            escalated = convert.escalation_pb(record)
            details = convert.details_from_pb(escalated.details)
            action = convert.ACTION_FROM_PB.get(escalated.action)
            grant: storage.GrantRecord | None = None
            # A grant only for a verified visitor and a complete action: an anonymous
            # hand-off or a plain "talk to a human" is approved without one.
            if (
                action is not None
                and record.contact_id
                and record.stripe_customer_id
                and details.stripe_customer_id == record.stripe_customer_id
                and not decisions.details_problem(action, details, now)
            ):
                in_force = await self._bounds(connection, workspace_id)
                reservation = decisions.approval_reservation(action, details, in_force, now)
                if reservation is not None:
                    await storage.reserve(
                        connection,
                        workspace_id,
                        customer_id=record.stripe_customer_id,
                        contact_id=record.contact_id,
                        reservation=reservation,
                    )
                grant = await self._reserve_grant(
                    connection,
                    workspace_id,
                    record.contact_id,
                    action,
                    details,
                    in_force.cancellation_grace,
                    reservation,
                    now,
                    escalation_id=record.escalation_id,
                )
            decided = await storage.decide_escalation(
                connection,
                workspace_id,
                record.escalation_id,
                state="approved",
                now=now,
                decided_by=admin,
                note="",
                grant_id=grant.grant.grant_id if grant else "",
            )
            entries = [
                _entry(
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
                entries.append(
                    _entry(
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
            await storage.append_audit(connection, self._audit_keys, workspace_id, entries)
            return pb.ApproveEscalationResponse(
                escalation=convert.escalation_pb(decided),
                grant=convert.grant_pb(grant) if grant else None,
            )

        return await idempotency.run_once(
            self._pool,
            workspace_id,
            request.idempotency_key,
            request,
            pb.ApproveEscalationResponse,
            approve,
        )

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
        now = self._clock()

        async def reject(connection: Connection) -> pb.RejectEscalationResponse:
            record = await self._decide_escalation(
                connection, request.workspace_id, request.escalation_id
            )
            decided = await storage.decide_escalation(
                connection,
                request.workspace_id,
                record.escalation_id,
                state="rejected",
                now=now,
                decided_by=admin,
                note=request.note,
                grant_id="",
            )
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    _entry(
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
            return pb.RejectEscalationResponse(escalation=convert.escalation_pb(decided))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.RejectEscalationResponse,
            reject,
        )

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
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    _entry(
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
            await storage.append_audit(
                connection,
                self._audit_keys,
                request.workspace_id,
                [
                    _entry(
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
        check.require(
            request.page_token == "" or request.page_token.isdigit(),
            "page_token",
            "is not a page token",
        )
        check.check()
        action = convert.ACTION_FROM_PB.get(request.action)
        where = storage.AuditFilter(
            contact_id=request.contact_id,
            action=action.value if action else "",
            start_time=(
                request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None
            ),
            end_time=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
        )
        size = _page_size(request.page_size, _DEFAULT_AUDIT_PAGE, _MAX_AUDIT_PAGE)
        after = int(request.page_token or "0")
        async with self._pool.acquire() as connection:
            events = await storage.list_audit_events(
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
        # One snapshot: entries appended while we read are not half-seen.
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            head_sequence, head_hash = await storage.audit_head(connection, request.workspace_id)
            after = 0
            while True:
                page = await storage.audit_chain_page(
                    connection, request.workspace_id, after, _VERIFY_PAGE
                )
                for stored in page:
                    if not verifier.feed(stored):
                        break
                if verifier.broken is not None or len(page) < _VERIFY_PAGE:
                    break
                after = page[-1].sequence
        result = verifier.finish(head_sequence, head_hash)
        return pb.VerifyAuditChainResponse(
            intact=result.intact,
            checked=result.checked,
            first_broken_sequence=result.first_broken_sequence,
            problem=result.problem,
            unsigned_entries=result.unsigned,
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
