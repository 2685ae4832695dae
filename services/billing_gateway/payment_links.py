"""Links the customer completes on a Stripe-hosted page: a resubscription's Checkout (a plan
change of a subscription that cannot change in place, under a policy grant) and a page to
update the payment method (the billing portal, else the open invoice's hosted page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from askvault.policy.v1 import policy_pb2
from billing_gateway import convert, operation_store
from billing_gateway.ledger import Ledger
from billing_gateway.reading import CustomerObjects
from billing_gateway.stripe_api import StripeAccount, StripeGateway
from billing_gateway.writes import write_request
from runtime import errors, idempotency
from runtime.database import Connection

Json = dict[str, Any]


@dataclass(frozen=True)
class PaymentLinks:
    """Checkout and payment-method links for the customer."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _ledger: Ledger
    _objects: CustomerObjects

    async def start_resubscription(
        self, request: pb.StartResubscriptionRequest, customer_id: str, account: StripeAccount
    ) -> pb.StartResubscriptionResponse:
        """A Checkout link that subscribes the customer anew to the target price under the grant."""
        current, sub, _ = await self._objects.subscription_pb(
            account, request.workspace_id, customer_id, request.subscription_id
        )
        if current.plan_change_in_place:
            # A subscription that can change in place changes with ChangePlan: no second one.
            raise errors.ServiceError(
                errors.Kind.FAILED_PRECONDITION,
                "PLAN_CHANGE_IN_PLACE",
                "this subscription changes plan in place (ChangePlan)",
            )
        if current.status == pb.SUBSCRIPTION_STATUS_CANCELED:
            raise errors.not_found("subscription")
        await self._objects.switchable(account, sub, request.target_price_id)
        types = list((sub.get("payment_settings") or {}).get("payment_method_types") or [])
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id,
            subscription_id=request.subscription_id,
            target_price_id=request.target_price_id,
        )
        write = write_request(
            request,
            "resubscribe",
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {
                "subscription": request.subscription_id,
                "price": request.target_price_id,
                # The new mandate is set up the way the current one was (UPI where UPI).
                "payment_method_types": types or ["upi"],
                "success_url": request.success_url,
            },
        )

        async def respond(
            operation: operation_store.OperationRecord, session: Json
        ) -> pb.StartResubscriptionResponse:
            response = pb.StartResubscriptionResponse(
                operation=convert.operation(operation),
                checkout_url=str(session.get("url") or ""),
                checkout_session_id=str(session.get("id") or ""),
                current_period_end=current.current_period_end,
            )
            if session.get("expires_at"):
                response.expires_at.FromSeconds(int(session["expires_at"]))
            return response

        return await self._ledger.execute(write, respond, pb.StartResubscriptionResponse)

    async def payment_method_update_link(
        self,
        request: pb.CreatePaymentMethodUpdateLinkRequest,
        customer_id: str,
        account: StripeAccount,
    ) -> pb.CreatePaymentMethodUpdateLinkResponse:
        """A link where the customer updates their payment method."""

        async def effect(connection: Connection) -> pb.CreatePaymentMethodUpdateLinkResponse:
            params: Any = {"customer": customer_id, "flow_data": {"type": "payment_method_update"}}
            if request.return_url:
                params["return_url"] = request.return_url
            try:
                session = await self._stripe.call(
                    account,
                    "billing_portal.sessions.create",
                    lambda c: c.v1.billing_portal.sessions.create_async(params),
                )
                return pb.CreatePaymentMethodUpdateLinkResponse(
                    url=str(session.url), kind=pb.UPDATE_LINK_KIND_BILLING_PORTAL
                )
            except errors.ServiceError as error:
                if error.kind is errors.Kind.UNAVAILABLE:
                    raise
            listed = await self._stripe.call(
                account,
                "invoices.list",
                lambda c: c.v1.invoices.list_async(
                    {"customer": customer_id, "status": "open", "limit": 1}
                ),
            )
            if not listed.data or not listed.data[0].hosted_invoice_url:
                raise errors.ServiceError(
                    errors.Kind.FAILED_PRECONDITION,
                    "OPERATION_STATE",
                    "no billing portal and no open invoice to update the card on",
                )
            return pb.CreatePaymentMethodUpdateLinkResponse(
                url=str(listed.data[0].hosted_invoice_url), kind=pb.UPDATE_LINK_KIND_HOSTED_INVOICE
            )

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.CreatePaymentMethodUpdateLinkResponse,
            effect,
        )
