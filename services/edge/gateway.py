"""The billing gateway as a turn calls it: unavailability becomes ``StripeUnavailable``, a
missing object ``NotFound``, an unlinked contact ``NotLinked``; every other refusal is the
caller's to word."""

from __future__ import annotations

import logging
from typing import Any

import grpc

from askvault.billing.v1 import billing_pb2 as bpb
from edge import views
from edge.domain.intents import Period
from edge.peers import Peers, error_reason, is_unavailable
from edge.turn import Context, NotFound, NotLinked, StripeUnavailable
from runtime import ids

logger = logging.getLogger(__name__)


async def call(peers: Peers, method: str, request: Any) -> Any:
    """Calls the gateway; unavailability becomes StripeUnavailable, NOT_FOUND NotFound."""
    try:
        return await getattr(peers.billing, method)(request, timeout=peers.billing_timeout())
    except grpc.aio.AioRpcError as error:
        if is_unavailable(error):
            logger.warning(
                "billing unavailable",
                extra={"rpc": method, "code": error.code().name, "reason": error_reason(error)},
            )
            raise StripeUnavailable(method) from error
        if error.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound("that") from error
        if error_reason(error) == "CUSTOMER_NOT_LINKED":
            raise NotLinked() from error
        raise


async def subscription(peers: Peers, context: Context) -> bpb.GetSubscriptionResponse:
    """The visitor's subscription (the answer may hold none), kept in ``context.reads`` for
    the turn's hand-off summary."""
    answer: bpb.GetSubscriptionResponse = await call(
        peers,
        "GetSubscription",
        bpb.GetSubscriptionRequest(
            workspace_id=context.workspace_id, identity_assertion=context.assertion
        ),
    )
    context.reads.subscription = answer
    return answer


async def plans(peers: Peers, context: Context, currency: str) -> list[bpb.Plan]:
    """The workspace's catalog (in ``currency`` when given)."""
    answer = await call(
        peers,
        "ListPlans",
        bpb.ListPlansRequest(workspace_id=context.workspace_id, currency=currency),
    )
    return list(answer.plans)


async def charges(peers: Peers, context: Context) -> list[bpb.Charge]:
    """The visitor's recent charges, newest first."""
    answer = await call(
        peers,
        "ListCharges",
        bpb.ListChargesRequest(
            workspace_id=context.workspace_id,
            identity_assertion=context.assertion,
            page_size=50,
        ),
    )
    return list(answer.charges)


async def charge(peers: Peers, context: Context, charge_id: str) -> bpb.Charge:
    """One of the visitor's charges by id (NOT_FOUND, as ``call`` raises it, when it is not
    theirs or does not exist)."""
    answer: bpb.GetChargeResponse = await call(
        peers,
        "GetCharge",
        bpb.GetChargeRequest(
            workspace_id=context.workspace_id,
            identity_assertion=context.assertion,
            charge_id=charge_id,
        ),
    )
    return answer.charge


async def invoices(peers: Peers, context: Context, period: Period) -> list[bpb.InvoiceSummary]:
    """The visitor's invoices created in ``period``."""
    answer = await call(
        peers,
        "ListInvoices",
        bpb.ListInvoicesRequest(
            workspace_id=context.workspace_id,
            identity_assertion=context.assertion,
            created_after=views.timestamp(period.start),
            created_before=views.timestamp(period.end),
            page_size=100,
        ),
    )
    return list(answer.invoices)


async def customer_email(peers: Peers, context: Context) -> str:
    """The bound Stripe customer's own email: where to send when the visitor signed no
    email (the email they typed is never a recipient). Empty when unknown."""
    if not context.contact.stripe_customer_id:
        return ""
    try:
        found = await peers.billing.FindCustomers(
            bpb.FindCustomersRequest(
                workspace_id=context.workspace_id,
                stripe_customer_id=context.contact.stripe_customer_id,
            ),
            timeout=peers.billing_timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.info("customer email not found", extra={"code": error.code().name})
        return ""
    return next((c.email for c in found.customers if c.email), "")


async def card_update_url(peers: Peers, context: Context, return_url: str) -> str | None:
    """A fresh link to the customer's payment method page; None when the gateway refused."""
    try:
        link = await call(
            peers,
            "CreatePaymentMethodUpdateLink",
            bpb.CreatePaymentMethodUpdateLinkRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                return_url=return_url,
                idempotency_key=ids.new_id("edge_card"),
            ),
        )
    except grpc.aio.AioRpcError as error:
        logger.warning("no card link", extra={"reason": error_reason(error)})
        return None
    return str(link.url)
