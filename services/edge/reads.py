"""Answers that need no quote: the subscription, a failed payment's ways on, invoices (and
emailing them), the plans, a card-update link, and undoing a scheduled cancellation (the gateway
voids its own scheduled operation; no new grant is needed)."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

import grpc

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.notifier.v1 import notifier_pb2 as npb
from edge import gateway, offers, quoting, replies, views
from edge.domain import intents
from edge.domain.intents import Intent, Period
from edge.domain.proposals import InvoiceBundleTerms, InvoiceRecord
from edge.turn import Context, NotFound, Reply, TurnDeps
from runtime import ids

logger = logging.getLogger(__name__)


async def status(deps: TurnDeps, context: Context, focus: Intent) -> Reply:
    """The plan, its state, the next bill and the last invoice."""
    answer = await gateway.subscription(deps.peers, context)
    if not answer.HasField("subscription"):
        return Reply(replies.NO_SUBSCRIPTION, data={"subscription": None})
    reply = replies.status(context, answer.subscription, focus is Intent.NEXT_INVOICE)
    reply.data = {"subscription": views.subscription_json(answer.subscription)}
    return reply


async def payment_failed(deps: TurnDeps, context: Context) -> Reply:
    """The unpaid invoice with the ways on (retry, update the card, a person), or that there
    is none."""
    answer = await gateway.subscription(deps.peers, context)
    if not answer.HasField("subscription"):
        return Reply(replies.NO_SUBSCRIPTION, data={"subscription": None})
    latest = answer.subscription.latest_invoice
    if not latest.invoice_id or latest.status != "open":
        return Reply(replies.NO_FAILED_PAYMENT)
    return replies.payment_failed(context, latest)


async def invoices(deps: TurnDeps, context: Context, period: Period | None) -> Reply:
    """The invoices of the period with their links, offering to email them as one bundle."""
    period = period or _default_period(context)
    found = await gateway.invoices(deps.peers, context, period)
    if not found:
        return Reply(replies.no_invoices(period.label), data={"invoices": []})
    quote = await quoting.store_proposal(
        deps,
        context,
        InvoiceBundleTerms(period.label, tuple(views.invoice_record(i) for i in found)),
        replies.bundle_summary(period.label),
    )
    reply = replies.invoices(context, period.label, found, quote)
    reply.data = {"invoices": [views.invoice_json(i) for i in found], "quote": quote.as_json()}
    return reply


async def email_invoices(deps: TurnDeps, context: Context, period: Period | None) -> Reply:
    """Emails the period's invoices at once (asked for in so many words)."""
    period = period or _default_period(context)
    found = await gateway.invoices(deps.peers, context, period)
    if not found:
        return Reply(replies.no_invoices_to_email(period.label))
    return await send_bundle(
        deps,
        context,
        InvoiceBundleTerms(period.label, tuple(views.invoice_record(i) for i in found)),
        ids.new_id("bundle"),
    )


def _default_period(context: Context) -> Period:
    local = context.now.astimezone(ZoneInfo(context.zone))
    found = intents.parse_period("last 3 months", local)
    assert found is not None
    return found


async def send_bundle(
    deps: TurnDeps, context: Context, bundle: InvoiceBundleTerms, key: str
) -> Reply:
    """Queues the invoice bundle email (``key`` makes a retry one email)."""
    # Only an email the workspace signed, or the bound customer's own email in Stripe.
    recipient = context.contact.email or await gateway.customer_email(deps.peers, context)
    if not recipient:
        return Reply(replies.NO_EMAIL_ADDRESS)
    try:
        await deps.peers.notifier.Send(
            npb.SendRequest(
                workspace_id=context.workspace_id,
                recipient=npb.Recipient(contact_id=context.contact.contact_id, email=recipient),
                template=npb.TEMPLATE_INVOICE_BUNDLE,
                channel=npb.CHANNEL_EMAIL,
                variables={
                    "period": bundle.period,
                    "invoice_links": "\n".join(f"{_name(i)}: {i.pdf_url}" for i in bundle.invoices),
                },
                attachments=[
                    npb.Attachment(
                        filename=f"{_name(i)}.pdf",
                        content_type="application/pdf",
                        url=i.pdf_url,
                    )
                    for i in bundle.invoices
                    if i.pdf_url
                ],
                dedup_key=key,
            ),
            timeout=deps.peers.timeout(),
        )
    except grpc.aio.AioRpcError as error:
        logger.warning("invoice bundle not queued", extra={"code": error.code().name})
        return Reply(replies.BUNDLE_NOT_SENT)
    return Reply(
        replies.bundle_sent(bundle.period, recipient), data={"emailed": len(bundle.invoices)}
    )


def _name(invoice: InvoiceRecord) -> str:
    return invoice.number or invoice.invoice_id


async def list_plans(deps: TurnDeps, context: Context) -> Reply:
    """The catalog, marking the visitor's own plan."""
    found = await gateway.plans(deps.peers, context, "")
    current = ""
    try:
        answer = await gateway.subscription(deps.peers, context)
    except NotFound:
        answer = None
    if answer is not None and answer.HasField("subscription"):
        # A subscriber hears the plans they may move to themselves.
        current = answer.subscription.plan.price_id
        found = offers.offered_plans(found, answer.subscription.plan, context.self_serve_price_ids)
    return Reply(replies.plans(found, current), data={"plans": [views.plan_json(p) for p in found]})


async def update_card(deps: TurnDeps, context: Context) -> Reply:
    """A secure link to the customer's payment method page."""
    url = await gateway.card_update_url(deps.peers, context, deps.settings.card_update_return_url)
    return replies.card_link(url)


async def undo(deps: TurnDeps, context: Context) -> Reply:
    """Voids the scheduled cancellation while its grace period lasts."""
    answer = await gateway.subscription(deps.peers, context)
    scheduled = (
        answer.subscription.scheduled_cancellation if answer.HasField("subscription") else None
    )
    operation_id = scheduled.operation_id if scheduled is not None else ""
    if not operation_id:
        if (
            answer.HasField("subscription")
            and answer.subscription.status == bpb.SUBSCRIPTION_STATUS_CANCELED
        ):
            return Reply(replies.ALREADY_CANCELED, status="denied")
        return Reply(replies.NO_CANCELLATION)
    result = await gateway.call(
        deps.peers,
        "UndoCancellation",
        bpb.UndoCancellationRequest(
            workspace_id=context.workspace_id,
            identity_assertion=context.assertion,
            operation_id=operation_id,
            idempotency_key=f"edge:undo:{operation_id}",
        ),
    )
    if result.undone:
        return Reply(replies.undone(answer.subscription.plan.name), data={"undone": True})
    return Reply(replies.TOO_LATE_TO_UNDO, data={"undone": False}, status="denied")
