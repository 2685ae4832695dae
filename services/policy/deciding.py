"""The Authorize use case: the visitor's assertion verified (before the transaction: it may
fetch identity's keys), then one decision, its counters, its grant or escalation and its
audit entries, in one transaction with the call's idempotency key.

Round trips per decision: the key's claim, the bounds, one statement for the counters and
the grant (grant_store.reserve_and_grant), one for the audit entries and the saved response
(audit_log.record_and_save). The audit entries are recorded unchained, so decisions of one
workspace do not queue on its chain head (chaining.py links them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

import asyncpg
from google.protobuf.message import Message

from askvault.policy.v1 import policy_pb2 as pb
from policy import (
    audit_log,
    bounds_store,
    convert,
    entries,
    escalation_store,
    grant_store,
    policy_metrics,
)
from policy.domain import audit, bounds, decisions
from policy.domain.decisions import Decision, Reason, Verdict
from policy.domain.model import Action, Confirmation, Details
from runtime import assertions, idempotency, ids, quotes
from runtime.database import Connection

ResponseT = TypeVar("ResponseT", bound=Message)
LoadedT = TypeVar("LoadedT")
# Claims the call's idempotency key and reads what the effect needs, in one round trip:
# (whether the key was claimed, what was read); given the method and the request's
# fingerprint.
Claim = Callable[[Connection, str, bytes], Awaitable[tuple[bool, LoadedT]]]


@dataclass(frozen=True)
class Outcome(Generic[ResponseT]):
    """What an effect did: its response, its audit entries and, for a Commit, the grant to
    mark committed in the same final statement."""

    response: ResponseT
    entries: list[audit.Entry]
    committing: audit_log.GrantCommit | None = None


class AssertionVerifier(Protocol):
    """Verifies identity assertions (runtime.assertions.Verifier, or a test double)."""

    async def verify(self, token: str, workspace_id: str) -> assertions.Assertion:
        """The assertion's claims, or raises AssertionRefused."""


@dataclass(frozen=True)
class UseCases:
    """What policy's use cases share: the pool, the audit MAC keys, the default bounds and
    the grants' lifetime."""

    pool: asyncpg.Pool
    audit_keys: audit.MacKeys
    defaults: bounds.Bounds
    grant_ttl: timedelta

    def in_force(self, stored: bounds.Bounds | None) -> bounds.Bounds:
        """The bounds in force: the workspace's, or the defaults for an unknown one."""
        return stored or bounds.for_unknown_workspace(self.defaults)

    async def bounds(self, connection: Connection, workspace_id: str) -> bounds.Bounds:
        """The bounds in force, read."""
        return self.in_force(await bounds_store.get_bounds(connection, workspace_id))

    async def run_audited(
        self,
        workspace_id: str,
        key: str,
        request: Message,
        response_type: type[ResponseT],
        claim: Claim[LoadedT],
        effect: Callable[[Connection, LoadedT], Awaitable[Outcome[ResponseT]]],
        principal: str | None = None,
    ) -> ResponseT:
        """``runtime.idempotency.run_once`` in fewer round trips: the key's claim comes with
        the effect's first read (``claim``), and the effect's audit entries are recorded
        with the saved response in one final statement, in the same transaction. A key
        already taken replays its response (or is refused) as run_once does. ``principal``:
        who the request's verified assertion names (``idempotency.fingerprint``)."""
        idempotency.require_key(key)
        method = request.DESCRIPTOR.full_name
        fingerprint = idempotency.fingerprint(request, principal=principal)
        async with self.pool.acquire() as connection, connection.transaction():
            claimed, loaded = await claim(connection, method, fingerprint)
            if not claimed:
                saved = await idempotency.claim(connection, workspace_id, key, method, fingerprint)
                if saved is not None:
                    return response_type.FromString(saved)
            outcome = await effect(connection, loaded)
            await audit_log.record_and_save(
                connection,
                self.audit_keys,
                workspace_id,
                outcome.entries,
                key,
                outcome.response,
                outcome.committing,
            )
            return outcome.response


@dataclass(frozen=True)
class AuthorizeCall:
    """A validated Authorize request and what was established before the transaction."""

    request: pb.AuthorizeRequest
    action: Action
    requested: Details
    # The quote the person confirmed, when the request claims a "yes".
    presented: Confirmation | None
    # The verified assertion, or None with the reason it was refused.
    assertion: assertions.Assertion | None
    refused: Reason | None
    now: datetime


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


async def authorize(
    cases: UseCases,
    verifier: AssertionVerifier,
    request: pb.AuthorizeRequest,
    now: datetime,
) -> pb.AuthorizeResponse:
    """Verifies the visitor's assertion (a refusal is decided, and audited, as a denial),
    decides, reserves, issues the grant or opens the escalation, audits; idempotent on the
    request's key. ``request`` is validated."""
    action = convert.ACTION_FROM_PB[request.action]
    requested = convert.details_from_pb(request.details)
    # Only a claimed yes is looked at (and audited); a quote sent without one is not.
    presented = (
        convert.confirmation_from_pb(request.confirmation)
        if request.confirmed and request.HasField("confirmation")
        else None
    )
    try:
        assertion: assertions.Assertion | None = await verifier.verify(
            request.identity_assertion, request.workspace_id
        )
        refused: Reason | None = None
    except assertions.AssertionRefused as refusal:
        assertion, refused = None, Reason(refusal.reason)
    call = AuthorizeCall(request, action, requested, presented, assertion, refused, now)
    return await _authorize(cases, call)


async def _authorize(cases: UseCases, call: AuthorizeCall) -> pb.AuthorizeResponse:
    """Authorize once its call is established: the decision in one audited transaction."""
    request = call.request
    # Set when this call decided (not a replay): its escalation is counted once committed.
    decided: list[bool] = []

    async def claim(
        connection: Connection, method: str, fingerprint: bytes
    ) -> tuple[bool, bounds.Bounds | None]:
        return await bounds_store.claim_with_bounds(
            connection, request.workspace_id, request.idempotency_key, method, fingerprint
        )

    async def decide(
        connection: Connection, stored: bounds.Bounds | None
    ) -> Outcome[pb.AuthorizeResponse]:
        if call.assertion is None:
            assert call.refused is not None
            denied = entries.entry(
                call.now,
                "decision",
                actor=("bot", ""),
                customer=call.requested.stripe_customer_id,
                action=call.action,
                details=call.requested,
                outcome=f"DENY:{call.refused.value}",
            )
            response = pb.AuthorizeResponse(
                decision=pb.DECISION_DENY,
                reason=pb.DecisionReason.Value(f"DECISION_REASON_{call.refused.value}"),
            )
            return Outcome(response, [denied])
        in_force = cases.in_force(stored)
        decision = decisions.decide(
            call.action,
            call.requested,
            in_force,
            assertion_customer=call.assertion.stripe_customer_id,
            confirmed=request.confirmed,
            confirmation=call.presented,
            expected_terms_hash=_expected_terms_hash(
                request, call.assertion.contact_id, call.presented
            ),
            now=call.now,
        )
        outcome = await _carry_out(cases, connection, call, call.assertion, decision, in_force)
        decided.append(True)
        return outcome

    response = await cases.run_audited(
        request.workspace_id,
        request.idempotency_key,
        _terms_of(request),
        pb.AuthorizeResponse,
        claim,
        decide,
        principal=_principal(call.assertion),
    )
    if decided and response.escalation_id:
        policy_metrics.count_escalation_opened(call.action.value)
    return response


def _terms_of(request: pb.AuthorizeRequest) -> pb.AuthorizeRequest:
    """What makes two Authorize calls under one key the same call: the action, its details
    and the quote confirmed, not when or how the yes was said nor the conversation's context
    (a "yes" retried after a lost answer is said again later, the transcript grown)."""
    terms = pb.AuthorizeRequest()
    terms.CopyFrom(request)
    terms.ClearField("context")
    terms.confirmation.ClearField("confirmed_at")
    terms.confirmation.ClearField("channel")
    return terms


def _principal(assertion: assertions.Assertion | None) -> str | None:
    """Who a verified assertion names; None (the assertion itself counts) when refused."""
    if assertion is None:
        return None
    return f"{assertion.contact_id}:{assertion.stripe_customer_id}"


async def _carry_out(
    cases: UseCases,
    connection: Connection,
    call: AuthorizeCall,
    assertion: assertions.Assertion,
    decision: Decision,
    in_force: bounds.Bounds,
) -> Outcome[pb.AuthorizeResponse]:
    """Reserves, issues the grant or opens the escalation; the response and its entries."""
    request, now = call.request, call.now
    workspace_id = request.workspace_id
    contact_id = assertion.contact_id
    customer_id = assertion.stripe_customer_id
    action = call.action
    reservation = decision.reservation
    usage: decisions.Usage | None = None
    record: grant_store.GrantRecord | None = None
    grace = in_force.cancellation_grace if action is Action.CANCEL_SUBSCRIPTION else None
    if decision.verdict is Verdict.ALLOW:
        grant_id = ids.new_id("gr")
        if reservation is None:
            record = await grant_store.insert_grant(
                connection,
                workspace_id,
                grant_id,
                contact_id,
                action,
                decision.details,
                expires_at=now + cases.grant_ttl,
                now=now,
                cancellation_grace=grace,
                reservation=None,
            )
        else:
            used, record = await grant_store.reserve_and_grant(
                connection,
                workspace_id,
                grant_id,
                contact_id,
                action,
                decision.details,
                customer_id=customer_id,
                reservation=reservation,
                expires_at=now + cases.grant_ttl,
                now=now,
                cancellation_grace=grace,
            )
            _, usage = decisions.bound_usage(
                reservation, used, pending=0 if record else reservation.quantity
            )
            if record is None:
                decision = decisions.over_limit(decision)
    elif reservation is not None:
        used = await grant_store.counters_used(
            connection,
            workspace_id,
            customer_id=customer_id,
            contact_id=contact_id,
            reservation=reservation,
        )
        over, usage = decisions.bound_usage(reservation, used, pending=reservation.quantity)
        if decision.verdict is Verdict.NEEDS_CONFIRMATION and over:
            # Already beyond a bound: say so now rather than ask for a "yes" that could only
            # end in a refusal. (The reservation on "yes" stays the check that counts; this
            # one only spares the visitor a pointless confirmation.)
            decision = decisions.over_limit(decision)
    response = pb.AuthorizeResponse(
        decision=convert.VERDICT_TO_PB[decision.verdict],
        reason=pb.DecisionReason.Value(f"DECISION_REASON_{decision.reason.value}"),
        usage=convert.usage_pb(usage) if usage else None,
        refund_window=convert.duration(in_force.refund_window),
    )
    customer = decision.details.stripe_customer_id or customer_id
    subject_id = ""
    if record is not None:
        response.grant.CopyFrom(convert.grant_pb(record))
        subject_id = record.grant.grant_id
    if decision.escalate:
        escalation = await escalation_store.insert_escalation(
            connection,
            workspace_id,
            ids.new_id("esc"),
            contact_id=contact_id,
            stripe_customer_id=customer_id,
            action=action.value,
            details=convert.to_json(convert.details_pb(decision.details)),
            context=convert.to_json(request.context),
            reason=decision.reason.value,
            now=now,
        )
        response.escalation_id = escalation.escalation_id
        subject_id = escalation.escalation_id
    visitor = ("visitor", contact_id)
    recorded = [
        entries.entry(
            now,
            "decision",
            actor=visitor,
            contact_id=contact_id,
            customer=customer,
            action=action,
            details=decision.details,
            outcome=f"{decision.verdict.value}:{decision.reason.value}",
            subject_id=subject_id,
            confirmation=call.presented,
        )
    ]
    if decision.escalate:
        recorded.append(
            entries.entry(
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
    return Outcome(response, recorded)
