"""What each ledger action does in Stripe, and how to find out from Stripe alone whether it
happened (reconciliation, after a crash or a lost answer). Every write carries the operation's
idempotency key and the metadata that lets it be found again."""

from __future__ import annotations

from typing import Any

from billing_gateway import operation_store
from billing_gateway.domain import adoption, billing
from billing_gateway.stripe_api import StripeAccount, StripeGateway, operation_key, to_json

Json = dict[str, Any]


def _marks(operation: operation_store.OperationRecord) -> dict[str, str]:
    """The metadata that lets the write be found again from Stripe alone (a ledger restored
    from an older backup takes it back, domain/adoption.py)."""
    return adoption.metadata(operation.operation_id, operation.grant_id, operation.idempotency_key)


async def perform(
    gateway: StripeGateway, account: StripeAccount, operation: operation_store.OperationRecord
) -> tuple[str, Json]:
    """Makes the operation's Stripe call; (Stripe object id, object)."""
    p = operation.parameters
    key = operation_key(operation.operation_id)
    options: Any = {"idempotency_key": key}
    if operation.action == "refund":
        params: Any = {
            "charge": p["charge"],
            "amount": p["amount"],
            "metadata": _marks(operation),
            # The charge as the refund left it, for the mirror (read-your-writes).
            "expand": ["charge"],
        }
        if p.get("reason"):
            params["reason"] = p["reason"]
        refund = await gateway.call(
            account, "refunds.create", lambda c: c.v1.refunds.create_async(params, options)
        )
        return str(refund.id), to_json(refund)
    if operation.action == "change_plan":
        update: Any = {
            "items": [{"id": p["item"], "price": p["price"]}],
            "proration_behavior": p["proration_behavior"],
            "metadata": _marks(operation),
        }
        sub = await gateway.call(
            account,
            "subscriptions.update",
            lambda c: c.v1.subscriptions.update_async(p["subscription"], update, options),
        )
        return str(sub.id), to_json(sub)
    if operation.action == "pause_subscription":
        pause: Any = {"behavior": "void"}
        if p.get("resumes_at"):
            pause["resumes_at"] = int(p["resumes_at"])
        sub = await gateway.call(
            account,
            "subscriptions.update",
            lambda c: c.v1.subscriptions.update_async(
                p["subscription"], {"pause_collection": pause}, options
            ),
        )
        return str(sub.id), to_json(sub)
    if operation.action == "resume_subscription":
        sub = await gateway.call(
            account,
            "subscriptions.update",
            lambda c: c.v1.subscriptions.update_async(
                p["subscription"], {"pause_collection": ""}, options
            ),
        )
        return str(sub.id), to_json(sub)
    if operation.action == "retry_payment":
        invoice = await gateway.call(
            account,
            "invoices.pay",
            lambda c: c.v1.invoices.pay_async(p["invoice"], {}, options),
        )
        return str(invoice.id), to_json(invoice)
    if operation.action == "resubscribe":
        marks = {
            "askvault_operation_id": operation.operation_id,
            billing.REPLACES_METADATA_KEY: p["subscription"],
        }
        checkout: Any = {
            "mode": "subscription",
            "customer": operation.stripe_customer_id,
            "line_items": [{"price": p["price"], "quantity": 1}],
            "payment_method_types": p["payment_method_types"],
            "subscription_data": {"metadata": marks},
            "metadata": marks,
        }
        if p.get("success_url"):
            checkout["success_url"] = p["success_url"]
        session = await gateway.call(
            account,
            "checkout.sessions.create",
            lambda c: c.v1.checkout.sessions.create_async(checkout, options),
        )
        return str(session.id), to_json(session)
    if operation.action == "cancel_subscription":
        current = await gateway.call(
            account,
            "subscriptions.retrieve",
            lambda c: c.v1.subscriptions.retrieve_async(p["subscription"]),
        )
        if current.status == "canceled":
            return str(current.id), to_json(current)
        sub = await gateway.call(
            account,
            "subscriptions.cancel",
            lambda c: c.v1.subscriptions.cancel_async(p["subscription"], {}, options),
        )
        return str(sub.id), to_json(sub)
    raise ValueError(f"unknown action {operation.action}")


async def discover(
    gateway: StripeGateway, account: StripeAccount, operation: operation_store.OperationRecord
) -> tuple[str, Json] | None:
    """Whether Stripe shows the operation as done: (object id, object), or None."""
    p = operation.parameters
    if operation.action == "refund":
        refunds = await gateway.call(
            account,
            "refunds.list",
            lambda c: c.v1.refunds.list_async({"charge": p["charge"], "limit": 100}),
        )
        for refund in (to_json(found) for found in refunds.data):
            metadata = refund.get("metadata") or {}
            if metadata.get("askvault_operation_id") == operation.operation_id:
                return str(refund["id"]), refund
        return None
    if operation.action == "resubscribe":
        # A Checkout Session whose link never reached the customer moves nothing: it expires
        # unused, and the operation is settled as not performed.
        return None
    if operation.action == "retry_payment":
        invoice = await gateway.call(
            account, "invoices.retrieve", lambda c: c.v1.invoices.retrieve_async(p["invoice"])
        )
        return (str(invoice.id), to_json(invoice)) if invoice.status == "paid" else None
    sub = to_json(
        await gateway.call(
            account,
            "subscriptions.retrieve",
            lambda c: c.v1.subscriptions.retrieve_async(p["subscription"]),
        )
    )
    done = False
    if operation.action == "change_plan":
        done = (sub.get("metadata") or {}).get("askvault_operation_id") == operation.operation_id
    elif operation.action == "pause_subscription":
        done = sub.get("pause_collection") is not None
    elif operation.action == "resume_subscription":
        done = sub.get("pause_collection") is None
    elif operation.action == "cancel_subscription":
        done = sub.get("status") == "canceled"
    return (str(sub["id"]), sub) if done else None
