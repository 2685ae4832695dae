"""CarryOutEscalation and DeclineEscalation: an admin's decision on an escalation, carried to
its end.

Carrying out (every step is finished by a retry of the call, whatever its key):
  1. the escalation is read from policy (the gateway's own credential);
  2. OPEN: policy approves it with the admin's own bearer, forwarded (policy verifies it and
     names the admin as approver); a grant for exactly the escalated action comes with it;
  3. the action runs through the use case a visitor's confirmed action runs (same ledger,
     Redeem / Stripe idempotency / Commit or Release), under a ledger key derived from the
     escalation id, so two calls with different keys find one operation and move money once;
     before the first run the charge or subscription is read from Stripe, and an action that
     can no longer apply moves nothing: the grant is released, the outcome is FAILED;
  4. policy records the outcome (EXECUTED with the Stripe object, or FAILED with the reason);
  5. the customer is told (the notifier's dedup key ``escalation:<id>:outcome``: one message).
An escalation already EXECUTED or FAILED answers its recorded outcome (and tells the customer
if a crash came between 4 and 5). A plain hand-off (no action) is approved: NO_ACTION.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc

from askvault.billing.v1 import billing_pb2 as pb
from askvault.identity.v1 import identity_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway import escalated_actions, operation_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.escalated_actions import Call, Writes
from billing_gateway.notices import Notices
from billing_gateway.peers import Peers, error_reason
from runtime import clients, errors

logger = logging.getLogger(__name__)

# Failures that pass in time: the call is answered with them and its retry goes on.
_TRANSIENT = frozenset(
    {errors.Kind.UNAVAILABLE, errors.Kind.DEADLINE_EXCEEDED, errors.Kind.RESOURCE_EXHAUSTED}
)
_EXECUTED = "executed"
_FAILED = "failed"


def ledger_key(escalation_id: str) -> str:
    """The ledger's idempotency key of an escalation's one operation."""
    return f"escalation:{escalation_id}"


def notice_key(escalation_id: str) -> str:
    """The notifier's dedup key of the message that tells the customer the outcome."""
    return f"escalation:{escalation_id}:outcome"


def _from_rpc(error: grpc.aio.AioRpcError, what: str) -> errors.ServiceError:
    """Another service's refusal, passed on with its status and reason."""
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return errors.ServiceError(
            errors.Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", f"{what} did not answer"
        )
    kind = errors.Kind.__members__.get(code.name, errors.Kind.UNAVAILABLE)
    return errors.ServiceError(
        kind, error_reason(error) or code.name, str(error.details() or f"{what} refused")
    )


@dataclass(frozen=True)
class Outcome:
    """How an escalation ended, as CarryOutEscalation answers it."""

    outcome: pb.EscalationOutcome.ValueType
    operation_id: str = ""
    stripe_object_id: str = ""
    failure_reason: str = ""


# How long a call waits for another call deciding the same escalation (an admin's double
# click, the console and the CLI at once) before it is answered ABORTED ESCALATION_BUSY.
LOCK_WAIT_SECONDS = 30


class Escalations:
    """The admin's decisions on escalations, carried to the customer."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        peers: Peers,
        accounts: AccountDirectory,
        notices: Notices,
        writes: Writes,
    ) -> None:
        self._pool = pool
        self._peers = peers
        self._accounts = accounts
        self._notices = notices
        self._writes = writes

    # -- policy ----------------------------------------------------------------------------

    async def _get(self, workspace_id: str, escalation_id: str) -> policy_pb2.Escalation:
        try:
            answer = await self._peers.policy.GetEscalation(
                policy_pb2.GetEscalationRequest(
                    workspace_id=workspace_id, escalation_id=escalation_id
                ),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError as error:
            raise _from_rpc(error, "policy") from None
        escalation: policy_pb2.Escalation = answer.escalation
        return escalation

    async def _approve(
        self, escalation: policy_pb2.Escalation, authorization: str, key: str
    ) -> policy_pb2.Escalation:
        """Approves as the calling admin (their bearer forwarded); the escalation as it is
        after, also when another call approved it first."""
        try:
            answer = await self._peers.policy.ApproveEscalation(
                policy_pb2.ApproveEscalationRequest(
                    workspace_id=escalation.workspace_id,
                    escalation_id=escalation.escalation_id,
                    idempotency_key=f"carry-out:{escalation.escalation_id}:{key}",
                ),
                metadata=(("authorization", authorization),),
                timeout=clients.timeout(5.0),
            )
        except grpc.aio.AioRpcError as error:
            refused = _from_rpc(error, "policy")
            if refused.reason != "NOT_PENDING":
                raise refused from None
            return await self._get(escalation.workspace_id, escalation.escalation_id)
        approved: policy_pb2.Escalation = answer.escalation
        return approved

    async def _record(self, escalation: policy_pb2.Escalation, result: Outcome) -> None:
        executed = result.outcome == pb.ESCALATION_OUTCOME_EXECUTED
        try:
            await self._peers.policy.RecordEscalationOutcome(
                policy_pb2.RecordEscalationOutcomeRequest(
                    workspace_id=escalation.workspace_id,
                    escalation_id=escalation.escalation_id,
                    state=(
                        policy_pb2.ESCALATION_STATE_EXECUTED
                        if executed
                        else policy_pb2.ESCALATION_STATE_FAILED
                    ),
                    stripe_object_id=result.stripe_object_id if executed else "",
                    failure_reason="" if executed else result.failure_reason,
                    idempotency_key=f"{notice_key(escalation.escalation_id)}:recorded",
                ),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError as error:
            raise _from_rpc(error, "policy") from None

    async def _release(self, escalation: policy_pb2.Escalation, reason: str) -> None:
        """Frees the grant of an action that did not run (already resolved: nothing to do)."""
        try:
            await self._peers.release(
                escalation.workspace_id,
                escalation.grant_id,
                ledger_key(escalation.escalation_id),
                reason,
            )
        except errors.ServiceError as error:
            if error.kind in _TRANSIENT:
                raise

    # -- the customer ----------------------------------------------------------------------

    async def _tell(
        self,
        escalation: policy_pb2.Escalation,
        template: notifier_pb2.Template.ValueType,
        variables: dict[str, str],
    ) -> str:
        """Queues the message to the escalation's contact; its id ("" when there is nobody
        to tell or the notifier refuses it for good: no address, no consent)."""
        if not escalation.contact_id:
            return ""
        try:
            found = await self._peers.identity.GetContact(
                identity_pb2.GetContactRequest(
                    workspace_id=escalation.workspace_id, contact_id=escalation.contact_id
                ),
                timeout=clients.timeout(3.0),
            )
            # The contact's email, else the customer's at Stripe (a visitor's typed email
            # is not kept); WhatsApp goes by the contact's consent, in the notifier.
            email = found.contact.email or await self._notices.customer_email(
                escalation.workspace_id, escalation.stripe_customer_id
            )
            sent = await self._peers.notifier.Send(
                notifier_pb2.SendRequest(
                    workspace_id=escalation.workspace_id,
                    recipient=notifier_pb2.Recipient(contact_id=escalation.contact_id, email=email),
                    template=template,
                    variables=variables,
                    dedup_key=notice_key(escalation.escalation_id),
                ),
                timeout=clients.timeout(5.0),
            )
        except grpc.aio.AioRpcError as error:
            refused = _from_rpc(error, "identity or the notifier")
            if refused.kind in _TRANSIENT:
                raise refused from None
            logger.warning(
                "escalation outcome not sent",
                extra={
                    "escalation_id": escalation.escalation_id,
                    "reason": refused.reason,
                    "detail": refused.message,
                },
            )
            return ""
        return str(sent.message.message_id)

    async def _tell_outcome(self, escalation: policy_pb2.Escalation, result: Outcome) -> str:
        variables = {
            "escalation_id": escalation.escalation_id,
            "action_summary": escalated_actions.summary(escalation),
            "outcome": _EXECUTED if result.outcome == pb.ESCALATION_OUTCOME_EXECUTED else _FAILED,
        }
        amount = escalated_actions.amount_text(escalation.details)
        if amount:
            variables["amount"] = amount
        if result.outcome == pb.ESCALATION_OUTCOME_EXECUTED:
            variables["reference"] = result.stripe_object_id
        else:
            variables["failure_reason"] = result.failure_reason
        return await self._tell(escalation, notifier_pb2.TEMPLATE_ESCALATION_APPROVED, variables)

    # -- carrying out ----------------------------------------------------------------------

    async def _operation(
        self, workspace_id: str, escalation_id: str
    ) -> operation_store.OperationRecord | None:
        async with self._pool.acquire() as connection:
            return await operation_store.operation_by_key(
                connection, workspace_id, ledger_key(escalation_id)
            )

    async def _run(self, escalation: policy_pb2.Escalation) -> Outcome:
        """Runs the approved action once (or finds how its run ended)."""
        entry = escalated_actions.ACTIONS.get(escalation.action)
        if entry is None:
            # Approved with a grant for an action an admin cannot carry out (a resubscription
            # needs the customer's own checkout): nothing moves.
            await self._release(escalation, "ACTION_NOT_SUPPORTED")
            return Outcome(pb.ESCALATION_OUTCOME_FAILED, failure_reason="ACTION_NOT_SUPPORTED")
        operation = await self._operation(escalation.workspace_id, escalation.escalation_id)
        if operation is not None and operation.state == operation_store.SUCCEEDED:
            return Outcome(
                pb.ESCALATION_OUTCOME_EXECUTED,
                operation.operation_id,
                operation.stripe_object_id or escalation.details.subscription_id,
            )
        if operation is not None and operation.state == operation_store.FAILED:
            return Outcome(
                pb.ESCALATION_OUTCOME_FAILED,
                operation.operation_id,
                failure_reason=operation.error_reason or "NOT_PERFORMED",
            )
        call = Call(
            escalation,
            await self._accounts.account(escalation.workspace_id),
            escalation.grant_id,
            ledger_key(escalation.escalation_id),
        )
        if operation is None:
            # Nothing was tried yet: Stripe says whether the action still applies.
            problem = await entry.applies(self._writes, call)
            if problem:
                await self._release(escalation, problem)
                return Outcome(pb.ESCALATION_OUTCOME_FAILED, failure_reason=problem)
        try:
            ran = await entry.run(self._writes, call)
        except errors.ServiceError as error:
            if error.kind in _TRANSIENT:
                raise
            if operation is not None and operation.state == operation_store.IN_FLIGHT:
                # Stripe may have acted on the earlier try: reconciliation settles the row,
                # the next retry answers from it.
                raise errors.ServiceError(
                    errors.Kind.UNAVAILABLE,
                    "OPERATION_IN_FLIGHT",
                    "the escalation's operation is being settled; try again shortly",
                ) from None
            await self._release(escalation, error.reason)
            found = await self._operation(escalation.workspace_id, escalation.escalation_id)
            return Outcome(
                pb.ESCALATION_OUTCOME_FAILED,
                found.operation_id if found else "",
                failure_reason=error.reason,
            )
        return Outcome(pb.ESCALATION_OUTCOME_EXECUTED, ran.operation_id, ran.stripe_object_id)

    async def _recorded(self, escalation: policy_pb2.Escalation) -> Outcome:
        operation = await self._operation(escalation.workspace_id, escalation.escalation_id)
        if escalation.state == policy_pb2.ESCALATION_STATE_EXECUTED:
            return Outcome(
                pb.ESCALATION_OUTCOME_EXECUTED,
                operation.operation_id if operation else "",
                escalation.stripe_object_id,
            )
        return Outcome(
            pb.ESCALATION_OUTCOME_FAILED,
            operation.operation_id if operation else "",
            failure_reason=escalation.failure_reason,
        )

    @contextlib.asynccontextmanager
    async def _deciding(self, workspace_id: str, escalation_id: str) -> AsyncIterator[None]:
        """One call at a time per escalation: a second call waits, then finds the first one's
        outcome (two calls must never both judge whether the action still applies: one
        would see the other's refund and release its grant)."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT_SECONDS}s'")
            try:
                await operation_store.lock_escalation(connection, workspace_id, escalation_id)
            except asyncpg.LockNotAvailableError:
                raise errors.ServiceError(
                    errors.Kind.ABORTED,
                    "ESCALATION_BUSY",
                    "another call is deciding this escalation; try again",
                ) from None
            yield

    async def carry_out(
        self, request: pb.CarryOutEscalationRequest, authorization: str
    ) -> pb.CarryOutEscalationResponse:
        """Approves (as the calling admin) and carries out the escalation; see the module."""
        async with self._deciding(request.workspace_id, request.escalation_id):
            return await self._carry_out(request, authorization)

    async def _carry_out(
        self, request: pb.CarryOutEscalationRequest, authorization: str
    ) -> pb.CarryOutEscalationResponse:
        escalation = await self._get(request.workspace_id, request.escalation_id)
        if escalation.state == policy_pb2.ESCALATION_STATE_OPEN:
            escalation = await self._approve(escalation, authorization, request.idempotency_key)
        if escalation.state == policy_pb2.ESCALATION_STATE_REJECTED:
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "ESCALATION_DECLINED",
                "the escalation was declined",
            )
        if escalation.state in (
            policy_pb2.ESCALATION_STATE_EXECUTED,
            policy_pb2.ESCALATION_STATE_FAILED,
        ):
            result = await self._recorded(escalation)
        elif not escalation.grant_id:
            # A plain hand-off: approved, no money moves, the agent answers the customer.
            return pb.CarryOutEscalationResponse(outcome=pb.ESCALATION_OUTCOME_NO_ACTION)
        else:
            result = await self._run(escalation)
            await self._record(escalation, result)
        notice = await self._tell_outcome(escalation, result)
        return pb.CarryOutEscalationResponse(
            outcome=result.outcome,
            operation_id=result.operation_id,
            stripe_object_id=result.stripe_object_id,
            failure_reason=result.failure_reason,
            notice_message_id=notice,
        )

    # -- declining -------------------------------------------------------------------------

    async def decline(
        self, request: pb.DeclineEscalationRequest, authorization: str
    ) -> pb.DeclineEscalationResponse:
        """Rejects the escalation as the calling admin with the reason, and tells the
        customer; an escalation already declined answers DECLINED (and is told once)."""
        async with self._deciding(request.workspace_id, request.escalation_id):
            return await self._decline(request, authorization)

    async def _decline(
        self, request: pb.DeclineEscalationRequest, authorization: str
    ) -> pb.DeclineEscalationResponse:
        escalation = await self._get(request.workspace_id, request.escalation_id)
        if escalation.state == policy_pb2.ESCALATION_STATE_OPEN:
            try:
                answer = await self._peers.policy.RejectEscalation(
                    policy_pb2.RejectEscalationRequest(
                        workspace_id=request.workspace_id,
                        escalation_id=request.escalation_id,
                        note=request.reason,
                        idempotency_key=f"decline:{request.escalation_id}:{request.idempotency_key}",
                    ),
                    metadata=(("authorization", authorization),),
                    timeout=clients.timeout(5.0),
                )
                escalation = answer.escalation
            except grpc.aio.AioRpcError as error:
                refused = _from_rpc(error, "policy")
                if refused.reason != "NOT_PENDING":
                    raise refused from None
                escalation = await self._get(request.workspace_id, request.escalation_id)
        if escalation.state != policy_pb2.ESCALATION_STATE_REJECTED:
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "NOT_PENDING",
                "the escalation was already approved",
                metadata={"state": policy_pb2.EscalationState.Name(escalation.state)},
            )
        variables = {
            "escalation_id": escalation.escalation_id,
            "action_summary": escalated_actions.summary(escalation),
            "reason": escalation.decision_note or request.reason,
        }
        amount = escalated_actions.amount_text(escalation.details)
        if amount:
            variables["amount"] = amount
        notice = await self._tell(escalation, notifier_pb2.TEMPLATE_ESCALATION_DECLINED, variables)
        return pb.DeclineEscalationResponse(
            outcome=pb.ESCALATION_OUTCOME_DECLINED, notice_message_id=notice
        )
