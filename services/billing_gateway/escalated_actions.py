"""The actions an approved escalation can carry, one entry per action: whether it still
applies (read from Stripe, authoritative), how it runs (the very use case a visitor's
confirmed action runs, under the escalation's grant and a ledger key derived from the
escalation id), and how the customer is told what it was.

A start of a resubscription is not among them: it makes a Checkout link the customer must
complete, which no admin can carry out for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.domain import billing
from billing_gateway.stripe_api import StripeAccount
from runtime import errors

Json = dict[str, Any]

# Why an approved action no longer applies (failure_reason; the notifier words the codes).
ALREADY_REFUNDED = "ALREADY_REFUNDED"
CHARGE_DISPUTED = "CHARGE_DISPUTED"
CHARGE_NOT_FOUND = "CHARGE_NOT_FOUND"
SUBSCRIPTION_CHANGED = "SUBSCRIPTION_CHANGED"
SUBSCRIPTION_CANCELED = "SUBSCRIPTION_CANCELED"
SUBSCRIPTION_NOT_FOUND = "SUBSCRIPTION_NOT_FOUND"
INVOICE_NOT_OPEN = "INVOICE_NOT_OPEN"
INVOICE_NOT_FOUND = "INVOICE_NOT_FOUND"

_ENDED = frozenset({"canceled", "incomplete_expired"})


class Writes(Protocol):
    """The gateway's write use cases for a known customer (writes.Writes)."""

    async def read_owned(
        self, account: StripeAccount, kind: str, object_id: str, customer_id: str
    ) -> Json:
        """The customer's object, read from Stripe; NOT_FOUND when not theirs."""

    async def refund_for(
        self, request: pb.RefundChargeRequest, customer_id: str, account: StripeAccount
    ) -> pb.RefundChargeResponse:
        """RefundCharge's use case."""

    async def change_plan_for(
        self, request: pb.ChangePlanRequest, customer_id: str, account: StripeAccount
    ) -> pb.ChangePlanResponse:
        """ChangePlan's use case."""

    async def cancel_for(
        self, request: pb.CancelSubscriptionRequest, customer_id: str, account: StripeAccount
    ) -> pb.CancelSubscriptionResponse:
        """CancelSubscription's use case."""

    async def subscription_write_for(
        self,
        request: Any,
        action: str,
        parameters: Json,
        customer_id: str,
        account: StripeAccount,
    ) -> pb.PauseSubscriptionResponse:
        """PauseSubscription's and ResumeSubscription's use case."""

    async def retry_payment_for(
        self, request: pb.RetryInvoicePaymentRequest, customer_id: str, account: StripeAccount
    ) -> pb.RetryInvoicePaymentResponse:
        """RetryInvoicePayment's use case."""


@dataclass(frozen=True)
class Call:
    """One run of an escalated action: the escalation, the customer's account, the grant and
    the ledger key (derived from the escalation id: one operation per escalation)."""

    escalation: policy_pb2.Escalation
    account: StripeAccount
    grant_id: str
    ledger_key: str

    @property
    def details(self) -> policy_pb2.ActionDetails:
        return self.escalation.details

    @property
    def customer_id(self) -> str:
        return str(self.escalation.stripe_customer_id)

    @property
    def workspace_id(self) -> str:
        return str(self.escalation.workspace_id)


@dataclass(frozen=True)
class Ran:
    """What a run produced: the ledger operation and the Stripe object."""

    operation_id: str
    stripe_object_id: str


@dataclass(frozen=True)
class EscalatedAction:
    """One action an escalation can carry."""

    # The ledger's name of the action.
    name: str
    # "" when it still applies, else why not (nothing is moved then).
    applies: Callable[[Writes, Call], Awaitable[str]]
    run: Callable[[Writes, Call], Awaitable[Ran]]
    # What was asked, in the customer's words ("a refund of 750.00 USD").
    summary: Callable[[policy_pb2.ActionDetails], str]


def amount_text(details: policy_pb2.ActionDetails) -> str:
    """The action's amount formatted for people ("750.00 USD"), or ""."""
    if not details.HasField("amount") or not details.amount.amount_minor:
        return ""
    return billing.display_amount(details.amount.amount_minor, details.amount.currency)


async def _owned(writes: Writes, call: Call, kind: str, object_id: str) -> Json | None:
    try:
        return await writes.read_owned(call.account, kind, object_id, call.customer_id)
    except errors.ServiceError as error:
        if error.kind is errors.Kind.NOT_FOUND:
            return None
        raise


# -- refunds -------------------------------------------------------------------------------


async def _refund_applies(writes: Writes, call: Call) -> str:
    charge = await _owned(writes, call, "charge", call.details.charge_id)
    if charge is None:
        return CHARGE_NOT_FOUND
    if charge.get("disputed"):
        return CHARGE_DISPUTED
    refundable = int(charge.get("amount_captured") or charge.get("amount") or 0) - int(
        charge.get("amount_refunded") or 0
    )
    if charge.get("refunded") or call.details.amount.amount_minor > refundable:
        return ALREADY_REFUNDED
    return ""


async def _refund(writes: Writes, call: Call) -> Ran:
    done = await writes.refund_for(
        pb.RefundChargeRequest(
            workspace_id=call.workspace_id,
            charge_id=call.details.charge_id,
            amount=call.details.amount,
            grant_id=call.grant_id,
            idempotency_key=call.ledger_key,
        ),
        call.customer_id,
        call.account,
    )
    return Ran(done.operation.operation_id, done.refund_id)


# -- subscriptions -------------------------------------------------------------------------


async def _subscription(writes: Writes, call: Call) -> tuple[Json | None, str]:
    sub = await _owned(writes, call, "subscription", call.details.subscription_id)
    if sub is None:
        return None, SUBSCRIPTION_NOT_FOUND
    if sub.get("status") in _ENDED:
        return sub, SUBSCRIPTION_CANCELED
    return sub, ""


def _price_of(sub: Json) -> str:
    item = billing.first_item(sub) or {}
    return billing.expandable_id(item.get("price"))


async def _change_plan_applies(writes: Writes, call: Call) -> str:
    sub, problem = await _subscription(writes, call)
    if sub is None or problem:
        return problem
    # Already on the target price: the subscription changed since the customer asked.
    return SUBSCRIPTION_CHANGED if _price_of(sub) == call.details.target_price_id else ""


async def _change_plan(writes: Writes, call: Call) -> Ran:
    done = await writes.change_plan_for(
        pb.ChangePlanRequest(
            workspace_id=call.workspace_id,
            subscription_id=call.details.subscription_id,
            target_price_id=call.details.target_price_id,
            grant_id=call.grant_id,
            idempotency_key=call.ledger_key,
        ),
        call.customer_id,
        call.account,
    )
    return Ran(done.operation.operation_id, done.operation.stripe_object_id)


async def _cancel_applies(writes: Writes, call: Call) -> str:
    _sub, problem = await _subscription(writes, call)
    return problem


async def _cancel(writes: Writes, call: Call) -> Ran:
    done = await writes.cancel_for(
        pb.CancelSubscriptionRequest(
            workspace_id=call.workspace_id,
            subscription_id=call.details.subscription_id,
            grant_id=call.grant_id,
            idempotency_key=call.ledger_key,
        ),
        call.customer_id,
        call.account,
    )
    # Scheduled at now + grace: the subscription is the object the action concerns.
    return Ran(done.operation.operation_id, call.details.subscription_id)


async def _pause_applies(writes: Writes, call: Call) -> str:
    sub, problem = await _subscription(writes, call)
    if sub is None or problem:
        return problem
    return SUBSCRIPTION_CHANGED if sub.get("pause_collection") else ""


async def _resume_applies(writes: Writes, call: Call) -> str:
    sub, problem = await _subscription(writes, call)
    if sub is None or problem:
        return problem
    return "" if sub.get("pause_collection") else SUBSCRIPTION_CHANGED


def _subscription_run(action: str) -> Callable[[Writes, Call], Awaitable[Ran]]:
    async def run(writes: Writes, call: Call) -> Ran:
        request = pb.PauseSubscriptionRequest(
            workspace_id=call.workspace_id,
            subscription_id=call.details.subscription_id,
            grant_id=call.grant_id,
            idempotency_key=call.ledger_key,
        )
        parameters: Json = {"resumes_at": None} if action == "pause_subscription" else {}
        done = await writes.subscription_write_for(
            request, action, parameters, call.customer_id, call.account
        )
        return Ran(done.operation.operation_id, done.operation.stripe_object_id)

    return run


# -- invoices ------------------------------------------------------------------------------


async def _retry_applies(writes: Writes, call: Call) -> str:
    invoice = await _owned(writes, call, "invoice", call.details.invoice_id)
    if invoice is None:
        return INVOICE_NOT_FOUND
    return "" if invoice.get("status") == "open" else INVOICE_NOT_OPEN


async def _retry(writes: Writes, call: Call) -> Ran:
    done = await writes.retry_payment_for(
        pb.RetryInvoicePaymentRequest(
            workspace_id=call.workspace_id,
            invoice_id=call.details.invoice_id,
            grant_id=call.grant_id,
            idempotency_key=call.ledger_key,
        ),
        call.customer_id,
        call.account,
    )
    return Ran(done.operation.operation_id, done.operation.stripe_object_id)


ACTIONS: dict[int, EscalatedAction] = {
    common_pb2.BILLING_ACTION_REFUND: EscalatedAction(
        "refund",
        _refund_applies,
        _refund,
        lambda d: f"a refund of {amount_text(d)}",
    ),
    common_pb2.BILLING_ACTION_CHANGE_PLAN: EscalatedAction(
        "change_plan",
        _change_plan_applies,
        _change_plan,
        lambda d: "a change of your plan",
    ),
    common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION: EscalatedAction(
        "cancel_subscription",
        _cancel_applies,
        _cancel,
        lambda d: "the cancellation of your subscription",
    ),
    common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION: EscalatedAction(
        "pause_subscription",
        _pause_applies,
        _subscription_run("pause_subscription"),
        lambda d: "a pause of your subscription",
    ),
    common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION: EscalatedAction(
        "resume_subscription",
        _resume_applies,
        _subscription_run("resume_subscription"),
        lambda d: "resuming your subscription",
    ),
    common_pb2.BILLING_ACTION_RETRY_PAYMENT: EscalatedAction(
        "retry_payment",
        _retry_applies,
        _retry,
        lambda d: "a new attempt to pay your invoice",
    ),
}


def summary(escalation: policy_pb2.Escalation) -> str:
    """What the escalation asked for, in the customer's words."""
    entry = ACTIONS.get(escalation.action)
    return entry.summary(escalation.details) if entry else "your request"
