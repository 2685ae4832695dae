"""The money and plan actions, one entry each: what policy is asked to authorize, the billing
request made under the grant, what is kept with the proposal, and the replies for success and
for the gateway's refusals. Adding an action is adding an entry (and its terms in
``domain.proposals``); nothing else switches on the kind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.common.v1 import common_pb2 as cpb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import gateway, refusals, replies, views
from edge.domain.proposals import (
    CancelTerms,
    MoneyTerms,
    PauseTerms,
    PlanChangeTerms,
    ProposalKind,
    RefundTerms,
    ResubscribeTerms,
    ResumeTerms,
    RetryTerms,
)
from edge.peers import error_reason, is_overloaded
from edge.turn import Context, Reply, TurnDeps

logger = logging.getLogger(__name__)

TermsT = TypeVar("TermsT")
ResponseT = TypeVar("ResponseT")


@dataclass(frozen=True)
class Granted:
    """What every billing write under a grant carries."""

    workspace_id: str
    identity_assertion: str
    grant_id: str
    # Derived from the proposal, so that a retried "yes" writes once.
    idempotency_key: str

    def fields(self) -> dict[str, Any]:
        """The request fields they fill."""
        return {
            "workspace_id": self.workspace_id,
            "identity_assertion": self.identity_assertion,
            "grant_id": self.grant_id,
            "idempotency_key": self.idempotency_key,
        }


# A reply to a billing refusal, by its ErrorInfo reason.
RefusalReply = Callable[[TurnDeps, Context], Awaitable[Reply]]


async def _card_declined(deps: TurnDeps, context: Context) -> Reply:
    url = await gateway.card_update_url(deps.peers, context, deps.settings.card_update_return_url)
    return replies.declined_again(replies.card_link(url))


async def _already_refunded(deps: TurnDeps, context: Context) -> Reply:
    return Reply(replies.ALREADY_REFUNDED, status="denied")


async def _cannot_change_in_place(deps: TurnDeps, context: Context) -> Reply:
    return Reply(replies.CANNOT_CHANGE_IN_PLACE, status="denied")


async def _price_not_self_serve(deps: TurnDeps, context: Context) -> Reply:
    return Reply(refusals.PRICE_NOT_SELF_SERVE, status="denied")


# The gateway's refusal reasons mean the same whatever the write, and every action answers
# them alike; an action that needs its own wording for one gives its own mapping.
BILLING_REFUSALS: Mapping[str, RefusalReply] = {
    "CARD_DECLINED": _card_declined,
    "ALREADY_REFUNDED": _already_refunded,
    "PLAN_CHANGE_REQUIRES_RESUBSCRIBE": _cannot_change_in_place,
    # The workspace stopped offering the price between the quote and the "yes" (policy's
    # list), or the price as Stripe has it now is not one to move to by oneself.
    "PRICE_NOT_SELF_SERVE": _price_not_self_serve,
    "PRICE_NOT_SWITCHABLE": _price_not_self_serve,
}


@dataclass(frozen=True)
class MoneyAction(Generic[TermsT, ResponseT]):
    """One action that moves money or changes a plan."""

    billing_action: cpb.BillingAction.ValueType
    # What policy checks (and the quote's terms hash covers), for the contact's customer.
    policy_details: Callable[[TermsT, str], ppb.ActionDetails]
    # The billing write under the grant.
    request: Callable[[TurnDeps, Granted, TermsT], Awaitable[ResponseT]]
    # What is kept with the proposal once the write answered.
    outcome: Callable[[ResponseT], dict[str, Any]]
    # The reply once the write succeeded.
    succeeded: Callable[[TurnDeps, Context, TermsT, ResponseT], Awaitable[Reply]]
    billing_refusals: Mapping[str, RefusalReply] = field(default_factory=lambda: BILLING_REFUSALS)


# ----- refund -----


def _refund_details(terms: RefundTerms, customer: str) -> ppb.ActionDetails:
    return ppb.ActionDetails(
        stripe_customer_id=customer,
        charge_id=terms.charge_id,
        amount=views.money_pb(terms.amount),
        charge_created_at=views.timestamp(terms.charge_created_at),
    )


async def _refund(deps: TurnDeps, granted: Granted, terms: RefundTerms) -> bpb.RefundChargeResponse:
    response: bpb.RefundChargeResponse = await gateway.call(
        deps.peers,
        "RefundCharge",
        bpb.RefundChargeRequest(
            **granted.fields(),
            charge_id=terms.charge_id,
            amount=views.money_pb(terms.amount),
            reason=bpb.RefundReason.ValueType(terms.reason),
        ),
    )
    return response


async def _refunded(
    deps: TurnDeps, context: Context, terms: RefundTerms, refund: bpb.RefundChargeResponse
) -> Reply:
    return Reply(
        replies.refunded(refund, terms.card),
        data={
            "refund_id": refund.refund_id,
            "amount": views.money_json(refund.amount),
            "status": refund.status,
        },
    )


# ----- plan change -----


def _plan_change_details(
    terms: PlanChangeTerms | ResubscribeTerms, customer: str
) -> ppb.ActionDetails:
    return ppb.ActionDetails(
        stripe_customer_id=customer,
        subscription_id=terms.subscription_id,
        target_price_id=terms.target_price_id,
    )


async def _change_plan(
    deps: TurnDeps, granted: Granted, terms: PlanChangeTerms
) -> bpb.ChangePlanResponse:
    response: bpb.ChangePlanResponse = await gateway.call(
        deps.peers,
        "ChangePlan",
        bpb.ChangePlanRequest(
            **granted.fields(),
            subscription_id=terms.subscription_id,
            target_price_id=terms.target_price_id,
            proration_behavior=bpb.PRORATION_BEHAVIOR_CREATE_PRORATIONS,
        ),
    )
    return response


async def _plan_changed(
    deps: TurnDeps, context: Context, terms: PlanChangeTerms, changed: bpb.ChangePlanResponse
) -> Reply:
    features = list(changed.features_gained) or list(terms.features_gained)
    sub = changed.subscription
    return Reply(
        replies.plan_changed(context, sub, features),
        data={"subscription": views.subscription_json(sub), "features_gained": features},
    )


# ----- plan change by subscribing anew (UPI, an Indian eMandate) -----


async def _resubscribe(
    deps: TurnDeps, granted: Granted, terms: ResubscribeTerms
) -> bpb.StartResubscriptionResponse:
    response: bpb.StartResubscriptionResponse = await gateway.call(
        deps.peers,
        "StartResubscription",
        bpb.StartResubscriptionRequest(
            **granted.fields(),
            subscription_id=terms.subscription_id,
            target_price_id=terms.target_price_id,
            success_url=deps.settings.card_update_return_url,
        ),
    )
    return response


async def _resubscribe_started(
    deps: TurnDeps,
    context: Context,
    terms: ResubscribeTerms,
    started: bpb.StartResubscriptionResponse,
) -> Reply:
    return replies.resubscribe_link(context, terms.old_name, terms.target_name, started)


# ----- cancel, pause and resume -----


def _subscription_details(
    terms: CancelTerms | PauseTerms | ResumeTerms, customer: str
) -> ppb.ActionDetails:
    return ppb.ActionDetails(stripe_customer_id=customer, subscription_id=terms.subscription_id)


async def _cancel(
    deps: TurnDeps, granted: Granted, terms: CancelTerms
) -> bpb.CancelSubscriptionResponse:
    response: bpb.CancelSubscriptionResponse = await gateway.call(
        deps.peers,
        "CancelSubscription",
        bpb.CancelSubscriptionRequest(**granted.fields(), subscription_id=terms.subscription_id),
    )
    return response


async def _cancel_scheduled(
    deps: TurnDeps, context: Context, terms: CancelTerms, cancel: bpb.CancelSubscriptionResponse
) -> Reply:
    return replies.cancellation_scheduled(
        context, terms.plan, cancel.operation.operation_id, views.moment(cancel.operation.run_at)
    )


async def _pause(
    deps: TurnDeps, granted: Granted, terms: PauseTerms
) -> bpb.PauseSubscriptionResponse:
    response: bpb.PauseSubscriptionResponse = await gateway.call(
        deps.peers,
        "PauseSubscription",
        bpb.PauseSubscriptionRequest(**granted.fields(), subscription_id=terms.subscription_id),
    )
    return response


async def _paused(
    deps: TurnDeps, context: Context, terms: PauseTerms, paused: bpb.PauseSubscriptionResponse
) -> Reply:
    return Reply(replies.paused(terms.plan))


async def _resume(
    deps: TurnDeps, granted: Granted, terms: ResumeTerms
) -> bpb.ResumeSubscriptionResponse:
    response: bpb.ResumeSubscriptionResponse = await gateway.call(
        deps.peers,
        "ResumeSubscription",
        bpb.ResumeSubscriptionRequest(**granted.fields(), subscription_id=terms.subscription_id),
    )
    return response


async def _resumed(
    deps: TurnDeps, context: Context, terms: ResumeTerms, resumed: bpb.ResumeSubscriptionResponse
) -> Reply:
    return Reply(
        replies.resumed(context, terms.plan, resumed.subscription),
        data={"subscription": views.subscription_json(resumed.subscription)},
    )


def _operation(
    response: bpb.ChangePlanResponse
    | bpb.CancelSubscriptionResponse
    | bpb.PauseSubscriptionResponse
    | bpb.ResumeSubscriptionResponse,
) -> dict[str, Any]:
    return {"operation_id": response.operation.operation_id}


# ----- retry a failed payment -----


def _retry_details(terms: RetryTerms, customer: str) -> ppb.ActionDetails:
    return ppb.ActionDetails(stripe_customer_id=customer, invoice_id=terms.invoice_id)


async def _retry(
    deps: TurnDeps, granted: Granted, terms: RetryTerms
) -> bpb.RetryInvoicePaymentResponse:
    response: bpb.RetryInvoicePaymentResponse = await gateway.call(
        deps.peers,
        "RetryInvoicePayment",
        bpb.RetryInvoicePaymentRequest(**granted.fields(), invoice_id=terms.invoice_id),
    )
    return response


async def _retried(
    deps: TurnDeps, context: Context, terms: RetryTerms, retried: bpb.RetryInvoicePaymentResponse
) -> Reply:
    if retried.paid:
        return Reply(replies.payment_went_through(retried.invoice), data={"paid": True})
    url = await gateway.card_update_url(deps.peers, context, deps.settings.card_update_return_url)
    reply = replies.declined_again(replies.card_link(url))
    reply.data = {"paid": False}
    return reply


ACTIONS: Mapping[ProposalKind, MoneyAction[Any, Any]] = {
    ProposalKind.REFUND: MoneyAction(
        billing_action=cpb.BILLING_ACTION_REFUND,
        policy_details=_refund_details,
        request=_refund,
        outcome=lambda refund: {"refund_id": refund.refund_id},
        succeeded=_refunded,
    ),
    ProposalKind.CHANGE_PLAN: MoneyAction(
        billing_action=cpb.BILLING_ACTION_CHANGE_PLAN,
        policy_details=_plan_change_details,
        request=_change_plan,
        outcome=_operation,
        succeeded=_plan_changed,
    ),
    ProposalKind.RESUBSCRIBE: MoneyAction(
        billing_action=cpb.BILLING_ACTION_START_RESUBSCRIPTION,
        policy_details=_plan_change_details,
        request=_resubscribe,
        outcome=lambda started: {
            "operation_id": started.operation.operation_id,
            "checkout_session_id": started.checkout_session_id,
        },
        succeeded=_resubscribe_started,
    ),
    ProposalKind.CANCEL: MoneyAction(
        billing_action=cpb.BILLING_ACTION_CANCEL_SUBSCRIPTION,
        policy_details=_subscription_details,
        request=_cancel,
        outcome=_operation,
        succeeded=_cancel_scheduled,
    ),
    ProposalKind.PAUSE: MoneyAction(
        billing_action=cpb.BILLING_ACTION_PAUSE_SUBSCRIPTION,
        policy_details=_subscription_details,
        request=_pause,
        outcome=_operation,
        succeeded=_paused,
    ),
    ProposalKind.RESUME: MoneyAction(
        billing_action=cpb.BILLING_ACTION_RESUME_SUBSCRIPTION,
        policy_details=_subscription_details,
        request=_resume,
        outcome=_operation,
        succeeded=_resumed,
    ),
    ProposalKind.RETRY_PAYMENT: MoneyAction(
        billing_action=cpb.BILLING_ACTION_RETRY_PAYMENT,
        policy_details=_retry_details,
        request=_retry,
        outcome=lambda retried: {"paid": retried.paid},
        succeeded=_retried,
    ),
}


def policy_terms(
    terms: MoneyTerms, customer: str
) -> tuple[cpb.BillingAction.ValueType, ppb.ActionDetails]:
    """The billing action and the details policy authorizes (and the quote hash covers)."""
    action = ACTIONS[terms.KIND]
    return action.billing_action, action.policy_details(terms, customer)


# Keeps what came of the write with the proposal.
Finish = Callable[[dict[str, Any]], Awaitable[None]]


async def execute(
    deps: TurnDeps, context: Context, terms: MoneyTerms, granted: Granted, finish: Finish
) -> Reply:
    """The billing write under the grant; what came of it is kept (``finish``) before the
    reply is made, whatever the gateway answered."""
    action = ACTIONS[terms.KIND]
    try:
        response = await action.request(deps, granted, terms)
        await finish(action.outcome(response))
        return await action.succeeded(deps, context, terms, response)
    except grpc.aio.AioRpcError as error:
        if is_overloaded(error):
            # The gateway refused before it claimed the key: the proposal stays CONFIRMING,
            # so the person's "yes" retried later drives the same keys and acts once.
            raise
        reason = error_reason(error)
        await finish({"error": reason or error.code().name})
        logger.warning("billing refused", extra={"reason": reason, "kind": terms.KIND.value})
        refused = action.billing_refusals.get(reason)
        if refused is not None:
            return await refused(deps, context)
        return Reply(replies.BILLING_REFUSED, status="error")
