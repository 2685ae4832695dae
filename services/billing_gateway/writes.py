"""The customer's writes under a policy grant: refund a charge, change plan, cancel (scheduled)
and undo a cancellation, pause and resume, retry an invoice's payment. The ``*_for`` use cases
serve a visitor's confirmed action (the servicer) and an approved escalation
(escalated_actions.py) alike; each goes through the ledger (Redeem, Stripe's idempotency,
Commit or Release) and tells the customer what was done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway import confirmation_outbox, convert, notices, operation_store
from billing_gateway.confirmation_outbox import ConfirmationOutbox
from billing_gateway.domain import billing
from billing_gateway.ledger import Ledger, WriteRequest
from billing_gateway.reading import CustomerObjects
from billing_gateway.stripe_api import StripeAccount, StripeGateway
from runtime import errors, idempotency
from runtime.database import Connection

Json = dict[str, Any]

_REFUND_REASONS = {
    pb.REFUND_REASON_DUPLICATE: "duplicate",
    pb.REFUND_REASON_FRAUDULENT: "fraudulent",
    pb.REFUND_REASON_REQUESTED_BY_CUSTOMER: "requested_by_customer",
}
_PRORATION = {
    pb.PRORATION_BEHAVIOR_UNSPECIFIED: "create_prorations",
    pb.PRORATION_BEHAVIOR_CREATE_PRORATIONS: "create_prorations",
    pb.PRORATION_BEHAVIOR_NONE: "none",
    pb.PRORATION_BEHAVIOR_ALWAYS_INVOICE: "always_invoice",
}


def write_request(
    request: Any,
    action: str,
    grant_id: str,
    customer_id: str,
    target_id: str,
    details: policy_pb2.ActionDetails,
    parameters: Json,
    confirmation: confirmation_outbox.Draft | None = None,
) -> WriteRequest:
    """The ledger's write of ``action`` under ``grant_id``, keyed by the request's key, with
    what the customer is told once it is done."""
    check = errors.Validator()
    check.non_empty(grant_id, "grant_id")
    check.check()
    idempotency.require_key(request.idempotency_key)
    return WriteRequest(
        workspace_id=request.workspace_id,
        idempotency_key=request.idempotency_key,
        # The customer the verified assertion names, not the assertion: a retry after a lost
        # answer carries a freshly issued one and must replay the first answer.
        fingerprint=idempotency.fingerprint(request, principal=customer_id),
        action=action,
        grant_id=grant_id,
        stripe_customer_id=customer_id,
        target_id=target_id,
        details=details,
        parameters=parameters,
        confirmation=confirmation,
    )


@dataclass(frozen=True)
class Writes:
    """The customer's writes (escalated_actions.Writes)."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _ledger: Ledger
    _notices: ConfirmationOutbox
    _objects: CustomerObjects

    async def read_owned(
        self, account: StripeAccount, kind: str, object_id: str, customer_id: str
    ) -> Json:
        """A customer's charge, subscription or invoice, read from Stripe (NOT_FOUND when it
        is someone else's): the facts an escalated action is checked against."""
        return await self._objects.retrieve(account, kind, object_id, customer_id)

    async def refund_for(
        self, request: pb.RefundChargeRequest, customer_id: str, account: StripeAccount
    ) -> pb.RefundChargeResponse:
        """The refund of one of ``customer_id``'s charges under the request's grant: a
        visitor's (RefundCharge) or an approved escalation's (escalations.py)."""
        charge = await self._objects.retrieve(account, "charge", request.charge_id, customer_id)
        currency = str(charge.get("currency") or "")
        if currency != request.amount.currency.lower():
            raise errors.invalid_argument(
                errors.FieldViolation("amount.currency", "must be the charge's currency")
            )
        # Policy redeems against what Stripe says, never what the caller asked: the charge's
        # id, customer, currency and creation time as just read (the time decides the refund
        # window), and the amount about to be sent to Stripe.
        details = policy_pb2.ActionDetails(
            stripe_customer_id=billing.expandable_id(charge.get("customer")),
            charge_id=str(charge.get("id") or ""),
            amount=convert.money(request.amount.amount_minor, currency),
            charge_created_at=convert.timestamp(int(charge.get("created") or 0)),
        )
        write = write_request(
            request,
            "refund",
            request.grant_id,
            customer_id,
            request.charge_id,
            details,
            {
                "charge": request.charge_id,
                "amount": request.amount.amount_minor,
                "reason": _REFUND_REASONS.get(request.reason, ""),
            },
        )

        async def respond(
            operation: operation_store.OperationRecord, refund: Json
        ) -> pb.RefundChargeResponse:
            return pb.RefundChargeResponse(
                operation=convert.operation(operation),
                refund_id=str(refund.get("id") or ""),
                amount=convert.money(refund.get("amount"), refund.get("currency")),
                status=str(refund.get("status") or ""),
            )

        return await self._ledger.execute(write, respond, pb.RefundChargeResponse)

    async def _in_place_or_refuse(self, current: pb.Subscription) -> None:
        if not current.plan_change_in_place:
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "PLAN_CHANGE_REQUIRES_RESUBSCRIBE",
                "a subscription paid by UPI or an Indian eMandate cannot change plan in place",
            )

    async def change_plan_for(
        self, request: pb.ChangePlanRequest, customer_id: str, account: StripeAccount
    ) -> pb.ChangePlanResponse:
        """A plan change of one of ``customer_id``'s subscriptions under the request's grant."""
        current, sub, _ = await self._objects.subscription_pb(
            account, request.workspace_id, customer_id, request.subscription_id
        )
        await self._in_place_or_refuse(current)
        target_price, target_product = await self._objects.switchable(
            account, sub, request.target_price_id
        )
        gained, lost = billing.features_diff(
            current.plan.features, billing.features_of(target_product)
        )
        item = billing.first_item(sub)
        if item is None:
            raise errors.not_found("subscription")
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id,
            subscription_id=request.subscription_id,
            target_price_id=request.target_price_id,
        )
        write = write_request(
            request,
            "change_plan",
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {
                "subscription": request.subscription_id,
                "item": str(item["id"]),
                "price": request.target_price_id,
                "proration_behavior": _PRORATION.get(
                    request.proration_behavior, "create_prorations"
                ),
            },
            confirmation_outbox.Draft(
                notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION,
                {
                    "new_plan": notices.plan_label(convert.plan(target_price, target_product)),
                    "old_plan": notices.plan_label(current.plan),
                    "unlocks": ", ".join(gained),
                    "loses": ", ".join(lost),
                },
                effective_date_variable="effective_date",
            ),
        )

        async def respond(
            operation: operation_store.OperationRecord, _: Json
        ) -> pb.ChangePlanResponse:
            after, _sub, _product = await self._objects.subscription_pb(
                account, request.workspace_id, customer_id, request.subscription_id
            )
            return pb.ChangePlanResponse(
                operation=convert.operation(operation), subscription=after, features_gained=gained
            )

        changed = await self._ledger.execute(write, respond, pb.ChangePlanResponse)
        await self._notices.send_now(
            request.workspace_id,
            notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION,
            changed.operation.operation_id,
        )
        return changed

    async def cancel_for(
        self, request: pb.CancelSubscriptionRequest, customer_id: str, account: StripeAccount
    ) -> pb.CancelSubscriptionResponse:
        """A cancellation (scheduled at now + grace) under the request's grant."""
        current, _sub, _product = await self._objects.subscription_pb(
            account, request.workspace_id, customer_id, request.subscription_id
        )
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id, subscription_id=request.subscription_id
        )
        write = write_request(
            request,
            "cancel_subscription",
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {"subscription": request.subscription_id},
            confirmation_outbox.Draft(
                notifier_pb2.TEMPLATE_CANCELLATION_SCHEDULED,
                {"plan_name": notices.plan_label(current.plan)},
                due_state=operation_store.SCHEDULED,
                effective_date_variable="cancel_at",
            ),
        )
        operation = await self._ledger.schedule_cancellation(write)
        if operation.state == operation_store.SCHEDULED and operation.run_at is not None:
            await self._notices.send_now(
                request.workspace_id,
                notifier_pb2.TEMPLATE_CANCELLATION_SCHEDULED,
                operation.operation_id,
            )
        return pb.CancelSubscriptionResponse(operation=convert.operation(operation))

    async def undo_cancellation(
        self, request: pb.UndoCancellationRequest, customer_id: str
    ) -> pb.UndoCancellationResponse:
        """The customer's scheduled cancellation (the one named, or their pending one) voided."""
        operation_id = request.operation_id
        if not operation_id:
            async with self._pool.acquire() as connection:
                pending = await operation_store.pending_cancellation(
                    connection, request.workspace_id, customer_id
                )
            if pending is None:
                raise errors.not_found("scheduled cancellation")
            operation_id = pending.operation_id
        voided: list[operation_store.OperationRecord] = []

        async def effect(connection: Connection) -> pb.UndoCancellationResponse:
            found = await operation_store.get_operation(
                connection, request.workspace_id, operation_id
            )
            if found is None or found.stripe_customer_id != customer_id:
                raise errors.not_found("operation")
            operation, undone = await self._ledger.undo_cancellation(
                connection, operation_id, request.workspace_id
            )
            if undone:
                voided.append(operation)
                # With the void, in its transaction: told exactly when it is undone.
                await confirmation_outbox.record(
                    connection,
                    request.workspace_id,
                    customer_id,
                    notifier_pb2.TEMPLATE_CANCELLATION_UNDONE,
                    {},
                    operation_id=operation_id,
                )
            return pb.UndoCancellationResponse(
                operation=convert.operation(operation), undone=undone
            )

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.UndoCancellationResponse,
            effect,
        )
        for operation in voided:
            await self._ledger.after_undo(operation)
        if response.undone:
            await self._notices.send_now(
                request.workspace_id,
                notifier_pb2.TEMPLATE_CANCELLATION_UNDONE,
                response.operation.operation_id,
            )
        return response

    async def subscription_write_for(
        self,
        request: Any,
        action: str,
        parameters: Json,
        customer_id: str,
        account: StripeAccount,
    ) -> pb.PauseSubscriptionResponse:
        """A pause or resume of one of ``customer_id``'s subscriptions under the grant."""
        await self._objects.retrieve(account, "subscription", request.subscription_id, customer_id)
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id, subscription_id=request.subscription_id
        )
        write = write_request(
            request,
            action,
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {"subscription": request.subscription_id, **parameters},
        )

        async def respond(
            operation: operation_store.OperationRecord, _: Json
        ) -> pb.PauseSubscriptionResponse:
            after, _sub, _product = await self._objects.subscription_pb(
                account, request.workspace_id, customer_id, request.subscription_id
            )
            return pb.PauseSubscriptionResponse(
                operation=convert.operation(operation), subscription=after
            )

        # Pause and resume answer the same shape; the ledger stores it as a pause response.
        return await self._ledger.execute(write, respond, pb.PauseSubscriptionResponse)

    async def retry_payment_for(
        self, request: pb.RetryInvoicePaymentRequest, customer_id: str, account: StripeAccount
    ) -> pb.RetryInvoicePaymentResponse:
        """A payment retry of one of ``customer_id``'s invoices under the request's grant."""
        invoice_id = request.invoice_id
        if not invoice_id:
            listed = await self._stripe.call(
                account,
                "invoices.list",
                lambda c: c.v1.invoices.list_async(
                    {"customer": customer_id, "status": "open", "limit": 1}
                ),
            )
            if not listed.data:
                raise errors.not_found("open invoice")
            invoice_id = str(listed.data[0].id)
        else:
            await self._objects.retrieve(account, "invoice", invoice_id, customer_id)
        details = policy_pb2.ActionDetails(stripe_customer_id=customer_id, invoice_id=invoice_id)
        write = write_request(
            request,
            "retry_payment",
            request.grant_id,
            customer_id,
            invoice_id,
            details,
            {"invoice": invoice_id},
        )

        async def respond(
            operation: operation_store.OperationRecord, invoice: Json
        ) -> pb.RetryInvoicePaymentResponse:
            return pb.RetryInvoicePaymentResponse(
                operation=convert.operation(operation),
                invoice=convert.invoice(invoice),
                paid=invoice.get("status") == "paid",
            )

        return await self._ledger.execute(write, respond, pb.RetryInvoicePaymentResponse)
