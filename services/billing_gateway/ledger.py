"""The operation ledger: every mutating Stripe call is recorded before Stripe is called,
taken under a grant redeemed at policy for exactly its parameters, and resolved (grant
committed or released) after. A crash at any point leaves a row that reconciliation
settles by looking the operation up in Stripe, never by repeating it blindly.

Order of a write:
  1. the operation row, IN_FLIGHT, committed on its own (a retry of the same idempotency
     key finds it and resumes it instead of starting another);
  2. policy.Redeem(grant, exact parameters, key = operation id);
  3. the Stripe call, with Idempotency-Key "askvault-<operation id>";
  4. the outcome recorded (SUCCEEDED with the Stripe object id, or FAILED with a reason),
     with the confirmation the operation owes the customer in the same transaction
     (confirmation_outbox.py);
  5. policy.Commit or policy.Release (keys derived from the operation id).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from google.protobuf.message import Message
from opentelemetry import propagate

from askvault.policy.v1 import policy_pb2
from billing_gateway import confirmation_outbox, gateway_metrics, operation_store, stripe_actions
from billing_gateway.accounts import AccountDirectory
from billing_gateway.convert import ACTIONS
from billing_gateway.mirror import Mirror
from billing_gateway.peers import Peers
from billing_gateway.stripe_api import StripeGateway
from runtime import errors, ids

logger = logging.getLogger(__name__)

Json = dict[str, Any]
ResponseT = TypeVar("ResponseT", bound=Message)
Clock = Callable[[], datetime]

# Reason of a failure -> the status it is answered with (also when replayed).
_REASON_KINDS = {
    "NOT_FOUND": errors.Kind.NOT_FOUND,
    "IDEMPOTENCY_MISMATCH": errors.Kind.INVALID_ARGUMENT,
    "INVALID_ARGUMENT": errors.Kind.INVALID_ARGUMENT,
    "STRIPE_UNAVAILABLE": errors.Kind.UNAVAILABLE,
    "DEPENDENCY_UNAVAILABLE": errors.Kind.UNAVAILABLE,
}
# Reasons after which the grant must not be released by us: it is not ours (or, for a
# charge time that differs from Stripe's, not for the charge we read; it stays unredeemed
# until it expires).
_FOREIGN_GRANT = frozenset(
    {"GRANT_INVALID", "GRANT_ALREADY_REDEEMED", "GRANT_EXPIRED", "GRANT_DETAILS_MISMATCH"}
)


def failure(reason: str, message: str = "") -> errors.ServiceError:
    """The error a failed operation answers with."""
    kind = _REASON_KINDS.get(reason, errors.Kind.FAILED_PRECONDITION)
    return errors.ServiceError(kind, reason, message or f"the operation failed: {reason}")


class SimulatedCrash(Exception):
    """Raised by the test hook between the Stripe call and recording its outcome."""


@dataclass(frozen=True)
class WriteRequest:
    """One write, as the servicer hands it to the ledger."""

    workspace_id: str
    idempotency_key: str
    fingerprint: bytes
    action: str
    grant_id: str
    stripe_customer_id: str
    target_id: str
    details: policy_pb2.ActionDetails
    # The exact Stripe parameters (replayed by reconciliation); never card data.
    parameters: Json
    # What the customer is told once the write is done (queued with that outcome).
    confirmation: confirmation_outbox.Draft | None = None


class Ledger:
    """Runs writes through the ledger, the scheduled cancellations and reconciliation."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        peers: Peers,
        accounts: AccountDirectory,
        clock: Clock,
        mirror: Mirror,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._peers = peers
        self._accounts = accounts
        self._clock = clock
        # Stripe's answer to each write goes into the mirror: the next read sees it.
        self._mirror = mirror
        # Test hook: called after Stripe answered and before the outcome is recorded, to
        # simulate the process dying there.
        self.after_stripe_call: Callable[[operation_store.OperationRecord], None] | None = None

    # -- writes --------------------------------------------------------------------------

    async def _start(
        self, write: WriteRequest, state: str
    ) -> tuple[operation_store.OperationRecord, bool]:
        """The operation of this idempotency key: (record, whether it is new)."""
        async with self._pool.acquire() as connection:
            created = await operation_store.insert_operation(
                connection,
                workspace_id=write.workspace_id,
                operation_id=ids.new_id("op"),
                idempotency_key=write.idempotency_key,
                fingerprint=write.fingerprint,
                action=write.action,
                state=state,
                grant_id=write.grant_id,
                stripe_customer_id=write.stripe_customer_id,
                target_id=write.target_id,
                parameters=write.parameters,
                trace_context=_current_trace_context(),
                confirmation=write.confirmation.stored() if write.confirmation else None,
            )
            if created is not None:
                return created, True
            existing = await operation_store.operation_by_key(
                connection, write.workspace_id, write.idempotency_key
            )
        assert existing is not None
        if existing.fingerprint != write.fingerprint or existing.action != write.action:
            raise errors.ServiceError(
                errors.Kind.INVALID_ARGUMENT,
                "IDEMPOTENCY_MISMATCH",
                "this idempotency key was used with other parameters",
            )
        return existing, False

    async def _record(
        self,
        operation: operation_store.OperationRecord,
        state: str,
        *,
        stripe_object_id: str = "",
        error_reason: str = "",
        run_at: datetime | None = None,
        response: bytes | None = None,
    ) -> operation_store.OperationRecord:
        async with self._pool.acquire() as connection, connection.transaction():
            recorded = await operation_store.update_operation(
                connection,
                operation,
                state=state,
                stripe_object_id=stripe_object_id,
                error_reason=error_reason,
                run_at=run_at,
                response=response,
            )
            # Committed with the outcome or not at all: a process killed, or a handler cut at
            # its deadline, right after this leaves no done write unconfirmed.
            await confirmation_outbox.record_due(
                connection, recorded.workspace_id, recorded.operation_id
            )
            return recorded

    async def _resolve_grant(self, operation: operation_store.OperationRecord) -> None:
        """Commits or releases the grant; on failure the periodic pass tries again."""
        if not operation.grant_id or operation.grant_resolution:
            return
        try:
            if operation.state == operation_store.SUCCEEDED:
                await self._peers.commit(
                    operation.workspace_id,
                    operation.grant_id,
                    operation.operation_id,
                    operation.stripe_object_id,
                )
                resolution = "committed"
            elif operation.error_reason in _FOREIGN_GRANT:
                resolution = "not_ours"
            else:
                await self._peers.release(
                    operation.workspace_id,
                    operation.grant_id,
                    operation.operation_id,
                    operation.error_reason or operation.state,
                )
                resolution = "released"
        except errors.ServiceError as error:
            if error.kind is errors.Kind.UNAVAILABLE:
                logger.warning(
                    "grant not resolved yet",
                    extra={"operation_id": operation.operation_id, "reason": error.reason},
                )
                return
            # Policy refuses (already resolved, expired): nothing left for us to do.
            resolution = f"refused:{error.reason}"
        async with self._pool.acquire() as connection:
            await operation_store.set_grant_resolution(connection, operation, resolution)

    async def _redeem(
        self, operation: operation_store.OperationRecord, details: policy_pb2.ActionDetails
    ) -> policy_pb2.Grant:
        try:
            return await self._peers.redeem(
                operation.workspace_id,
                operation.grant_id,
                ACTIONS[operation.action],
                details,
                operation.operation_id,
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.UNAVAILABLE:
                # Refused: Stripe was never called; the row says why.
                failed = await self._record(
                    operation, operation_store.FAILED, error_reason=error.reason
                )
                await self._resolve_grant(failed)
            raise

    async def execute(
        self,
        write: WriteRequest,
        respond: Callable[[operation_store.OperationRecord, Json], Awaitable[ResponseT]],
        response_type: type[ResponseT],
    ) -> ResponseT:
        """Runs a write once per idempotency key and returns its response."""
        account = await self._accounts.account(write.workspace_id)
        operation, _ = await self._start(write, operation_store.IN_FLIGHT)
        if operation.state == operation_store.SUCCEEDED and operation.response is not None:
            return response_type.FromString(operation.response)
        if operation.state == operation_store.FAILED:
            raise failure(operation.error_reason)
        await self._redeem(operation, write.details)
        try:
            object_id, result = await stripe_actions.perform(self._gateway, account, operation)
        except errors.ServiceError as error:
            if error.kind is errors.Kind.UNAVAILABLE:
                # Stripe may or may not have acted: the row stays IN_FLIGHT for a retry with
                # the same key, or for reconciliation to look it up.
                raise
            failed = await self._record(
                operation, operation_store.FAILED, error_reason=error.reason
            )
            await self._resolve_grant(failed)
            raise
        if self.after_stripe_call is not None:
            self.after_stripe_call(operation)
        await self._mirror.take_written(write.workspace_id, result)
        done = await self._record(operation, operation_store.SUCCEEDED, stripe_object_id=object_id)
        _count_success(done, result)
        response = await respond(done, result)
        done = await self._record(
            done,
            operation_store.SUCCEEDED,
            stripe_object_id=object_id,
            response=response.SerializeToString(deterministic=True),
        )
        await self._resolve_grant(done)
        return response

    # -- cancellations ---------------------------------------------------------------------

    async def schedule_cancellation(self, write: WriteRequest) -> operation_store.OperationRecord:
        """Records the cancellation, redeems its grant and schedules it at now + grace."""
        await self._accounts.account(write.workspace_id)
        operation, _ = await self._start(write, operation_store.IN_FLIGHT)
        if operation.state != operation_store.IN_FLIGHT or operation.run_at is not None:
            if operation.state == operation_store.FAILED:
                raise failure(operation.error_reason)
            return operation
        return await self._schedule(operation, write.details)

    async def _schedule(
        self, operation: operation_store.OperationRecord, details: policy_pb2.ActionDetails
    ) -> operation_store.OperationRecord:
        grant = await self._redeem(operation, details)
        grace = (
            timedelta(seconds=grant.cancellation_grace.seconds)
            if grant.HasField("cancellation_grace")
            else timedelta(0)
        )
        return await self._record(
            operation, operation_store.SCHEDULED, run_at=self._clock() + grace
        )

    async def undo_cancellation(
        self, connection: Any, operation_id: str, workspace_id: str
    ) -> tuple[operation_store.OperationRecord, bool]:
        """Voids a scheduled cancellation if it is still scheduled and not yet due. The row
        lock decides a race with the runner: exactly one of them wins."""
        operation = await operation_store.get_operation(
            connection, workspace_id, operation_id, for_update=True
        )
        if operation is None or operation.action != "cancel_subscription":
            raise errors.not_found("operation")
        if (
            operation.state != operation_store.SCHEDULED
            or operation.run_at is None
            or self._clock() >= operation.run_at
        ):
            return operation, False
        voided = await operation_store.update_operation(
            connection, operation, state=operation_store.VOIDED
        )
        return voided, True

    async def after_undo(self, operation: operation_store.OperationRecord) -> None:
        """Releases the voided cancellation's grant (after the void committed)."""
        await self._resolve_grant(operation)

    async def run_due_cancellations(self) -> int:
        """Claims and runs every due cancellation; returns how many ran."""
        ran = 0
        while True:
            async with self._pool.acquire() as connection, connection.transaction():
                operation = await operation_store.claim_due_scheduled(connection, self._clock())
                if operation is None:
                    return ran
                operation = await operation_store.update_operation(
                    connection, operation, state=operation_store.IN_FLIGHT
                )
            await self._finish_in_flight(operation, perform=True)
            ran += 1

    # -- reconciliation ------------------------------------------------------------------

    async def _finish_in_flight(
        self, operation: operation_store.OperationRecord, *, perform: bool
    ) -> operation_store.OperationRecord:
        """Settles an IN_FLIGHT operation: looks it up in Stripe and records what it finds;
        with ``perform`` (cancellations, whose run was promised) makes the call with the
        same idempotency key when Stripe shows it undone."""
        try:
            account = await self._accounts.account(operation.workspace_id)
            found = await stripe_actions.discover(self._gateway, account, operation)
            if found is None and perform:
                found = await stripe_actions.perform(self._gateway, account, operation)
        except errors.ServiceError as error:
            if error.kind is errors.Kind.UNAVAILABLE:
                logger.warning(
                    "operation not settled yet",
                    extra={"operation_id": operation.operation_id, "reason": error.reason},
                )
                return operation
            settled = await self._record(
                operation, operation_store.FAILED, error_reason=error.reason
            )
            await self._resolve_grant(settled)
            return settled
        if found is None:
            settled = await self._record(
                operation, operation_store.FAILED, error_reason="NOT_PERFORMED"
            )
        else:
            await self._mirror.take_written(operation.workspace_id, found[1])
            settled = await self._record(
                operation, operation_store.SUCCEEDED, stripe_object_id=found[0]
            )
            _count_success(settled, found[1])
        await self._resolve_grant(settled)
        return settled

    async def reconcile(self, older_than_seconds: float) -> int:
        """Settles in-flight operations older than the age, then resolves leftover grants;
        returns how many operations it touched."""
        touched: list[str] = []
        # Row ages are the database's wall time, not the (injectable) scheduling clock.
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        while True:
            async with self._pool.acquire() as connection, connection.transaction():
                operation = await operation_store.claim_in_flight(connection, cutoff, touched)
            if operation is None:
                break
            touched.append(operation.operation_id)
            if operation.action == "cancel_subscription" and operation.run_at is None:
                # Died between recording and scheduling: finish scheduling (Redeem is
                # idempotent by operation id).
                details = policy_pb2.ActionDetails(
                    stripe_customer_id=operation.stripe_customer_id,
                    subscription_id=operation.target_id,
                )
                with contextlib.suppress(errors.ServiceError):
                    await self._schedule(operation, details)
                continue
            settled = await self._finish_in_flight(
                operation, perform=operation.action == "cancel_subscription"
            )
            # Settled here, the ledger had not known the outcome: a difference with Stripe.
            if settled.state == operation_store.SUCCEEDED:
                gateway_metrics.count_differences(gateway_metrics.OPERATION_SUCCEEDED)
            elif settled.state == operation_store.FAILED:
                gateway_metrics.count_differences(gateway_metrics.OPERATION_FAILED)
        resolved: list[str] = []
        while True:
            async with self._pool.acquire() as connection:
                operation = await operation_store.claim_unresolved(connection, resolved)
            if operation is None:
                break
            resolved.append(operation.operation_id)
            await self._resolve_grant(operation)
        return len(touched) + len(resolved)


def _count_success(operation: operation_store.OperationRecord, stripe_object: Json) -> None:
    """The metrics of a write Stripe made (the skill dashboard's refunds)."""
    if operation.action == "refund":
        gateway_metrics.count_refund(stripe_object)


def _current_trace_context() -> dict[str, str]:
    """The W3C headers of the current trace, kept with the operation so that the webhook
    Stripe sends about its object later continues the same trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
