"""The customer's billing reads (their subscription, invoices, charges, duplicate charges and
operations) and the sync of their contact's tags: each scoped to the customer of the caller's
identity assertion, answered from the mirror when it holds the objects fresh, else by Stripe."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import convert, mirror_reads, mirror_store, operation_store, webhooks
from billing_gateway.domain import billing, mirroring
from billing_gateway.ledger import Clock
from billing_gateway.mirror import Mirror
from billing_gateway.peers import Peers
from billing_gateway.reading import CustomerObjects
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import errors, idempotency
from runtime.database import Connection

Json = dict[str, Any]


def _page_size(value: int, default: int, maximum: int) -> int:
    return default if value <= 0 else min(value, maximum)


def _created_filter(after: Any, before: Any = None) -> Json:
    created: Json = {}
    if after is not None and after.seconds:
        created["gte"] = after.seconds
    if before is not None and before.seconds:
        created["lt"] = before.seconds
    return created


@dataclass(frozen=True)
class Reads:
    """The customer's reads."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _mirror: Mirror
    _peers: Peers
    _clock: Clock
    _objects: CustomerObjects

    async def sync_contact_tags(
        self, request: pb.SyncContactTagsRequest, customer_id: str, account: StripeAccount
    ) -> pb.SyncContactTagsResponse:
        """The contact's tags set from the customer's subscription as Stripe holds it now."""

        async def effect(connection: Connection) -> pb.SyncContactTagsResponse:
            # The state Stripe holds now is at least as new as any event dated before this
            # second. Stripe dates events in whole seconds, so an event of this very second
            # may be newer than the read: the tags are dated just before it, and it wins.
            read_at = self._clock().replace(microsecond=0) - timedelta(seconds=1)
            listed = await self._stripe.call(
                account,
                "subscriptions.list",
                lambda c: c.v1.subscriptions.list_async(
                    {"customer": customer_id, "status": "all", "limit": 100}
                ),
            )
            picked = billing.pick_subscription([to_json(sub) for sub in listed.data])
            chosen = dict(picked) if picked is not None else None
            item = billing.first_item(chosen) if chosen is not None else None
            if item is not None and isinstance(item.get("price"), dict):
                # The tier is read from the product's metadata.
                item["price"]["product"] = await self._objects.product(account, item["price"])
            await self._peers.update_tags(
                webhooks.tags_request(
                    request.workspace_id,
                    customer_id,
                    chosen,
                    source_time=read_at,
                    idempotency_key=f"sync-tags-{request.idempotency_key}",
                )
            )
            return pb.SyncContactTagsResponse(
                subscription_id=str(chosen["id"]) if chosen is not None else ""
            )

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.SyncContactTagsResponse,
            effect,
        )

    async def get_subscription(
        self, request: pb.GetSubscriptionRequest, customer_id: str, account: StripeAccount
    ) -> pb.GetSubscriptionResponse:
        """The customer's subscription (the one asked for, or their current one)."""
        answered = await self._objects.subscription_from_mirror(
            request.workspace_id, customer_id, request.subscription_id
        )
        if answered is not None:
            return answered
        listed = await self._stripe.call(
            account,
            "subscriptions.list",
            lambda c: c.v1.subscriptions.list_async(
                {"customer": customer_id, "status": "all", "limit": 100}
            ),
        )
        subscriptions = [to_json(sub) for sub in listed.data]
        await self._mirror.take_read(request.workspace_id, subscriptions, listed)
        if request.subscription_id:
            chosen: Json | None = next(
                (s for s in subscriptions if s["id"] == request.subscription_id), None
            )
            if chosen is None:
                raise errors.not_found("subscription")
        else:
            picked = billing.pick_subscription(subscriptions)
            chosen = dict(picked) if picked is not None else None
        if chosen is None:
            return pb.GetSubscriptionResponse(
                subscription_count=0, origin=self._objects.from_stripe()
            )
        message, sub, _ = await self._objects.subscription_pb(
            account, request.workspace_id, customer_id, str(chosen["id"])
        )
        if sub.get("status") in ("active", "trialing", "past_due"):
            try:
                preview = await self._stripe.call(
                    account,
                    "invoices.create_preview",
                    lambda c: c.v1.invoices.create_preview_async(
                        {"customer": customer_id, "subscription": str(sub["id"])}
                    ),
                )
                message.next_invoice_amount.CopyFrom(
                    convert.money(preview.amount_due, preview.currency)
                )
            except errors.ServiceError as error:
                if error.kind is errors.Kind.UNAVAILABLE:
                    raise
        return pb.GetSubscriptionResponse(
            subscription=message,
            subscription_count=len(subscriptions),
            origin=self._objects.from_stripe(),
        )

    async def list_invoices(
        self, request: pb.ListInvoicesRequest, customer_id: str, account: StripeAccount
    ) -> pb.ListInvoicesResponse:
        """A page of the customer's invoices."""
        params: Any = {"customer": customer_id, "limit": _page_size(request.page_size, 12, 100)}
        created = _created_filter(
            request.created_after if request.HasField("created_after") else None,
            request.created_before if request.HasField("created_before") else None,
        )
        if created:
            params["created"] = created
        if request.status:
            params["status"] = request.status
        if request.page_token:
            params["starting_after"] = request.page_token
        page = await self._objects.customer_page(
            request.workspace_id,
            mirroring.INVOICE,
            customer_id,
            mirror_store.MirrorQuery(
                created_gte=created.get("gte"),
                created_lt=created.get("lt"),
                status=request.status,
                limit=params["limit"],
            ),
            request.page_token,
        )
        if page is not None:
            return pb.ListInvoicesResponse(
                invoices=[convert.invoice(invoice) for invoice in page.objects],
                next_page_token=str(page.objects[-1]["id"])
                if page.has_more and page.objects
                else "",
                origin=self._objects.from_mirror(page.as_of),
            )
        listed = await self._stripe.call(
            account, "invoices.list", lambda c: c.v1.invoices.list_async(params)
        )
        invoices = [to_json(invoice) for invoice in listed.data]
        await self._mirror.take_read(request.workspace_id, invoices, listed)
        return pb.ListInvoicesResponse(
            invoices=[convert.invoice(invoice) for invoice in invoices],
            next_page_token=str(invoices[-1]["id"]) if listed.has_more and invoices else "",
            origin=self._objects.from_stripe(),
        )

    async def list_charges(
        self, request: pb.ListChargesRequest, customer_id: str, account: StripeAccount
    ) -> pb.ListChargesResponse:
        """A page of the customer's charges."""
        params: Any = {"limit": _page_size(request.page_size, 20, 100)}
        if request.HasField("created_after"):
            params["created"] = _created_filter(request.created_after)
        charges, has_more, origin = await self._objects.charges(
            account, customer_id, params, request.page_token
        )
        return pb.ListChargesResponse(
            charges=[convert.charge(charge) for charge in charges],
            next_page_token=str(charges[-1]["id"]) if has_more and charges else "",
            origin=origin,
        )

    async def get_charge(
        self, request: pb.GetChargeRequest, customer_id: str, account: StripeAccount
    ) -> pb.GetChargeResponse:
        """One of the customer's charges."""
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, account.workspace_id)
            held = await mirror_reads.charge(
                connection,
                account.workspace_id,
                request.charge_id,
                customer_id,
                freshness,
                self._clock(),
            )
        if held is not None:
            return pb.GetChargeResponse(
                charge=convert.charge(held[0]), origin=self._objects.from_mirror(held[1])
            )
        found = await self._objects.retrieve(account, "charge", request.charge_id, customer_id)
        return pb.GetChargeResponse(
            charge=convert.charge(found), origin=self._objects.from_stripe()
        )

    async def find_duplicate_charges(
        self, customer_id: str, account: StripeAccount, window: int, lookback: int
    ) -> pb.FindDuplicateChargesResponse:
        """The customer's charges of the last ``lookback`` seconds that look charged twice."""
        since = int(time.time()) - lookback
        charges, _, origin = await self._objects.charges(
            account, customer_id, {"limit": 100, "created": {"gte": since}}
        )
        by_id = {str(charge["id"]): charge for charge in charges}
        pairs = billing.find_duplicates((billing.charge_facts(c) for c in charges), window)
        return pb.FindDuplicateChargesResponse(
            pairs=[
                pb.DuplicateChargePair(
                    original=convert.charge(by_id[original]),
                    duplicate=convert.charge(by_id[duplicate]),
                )
                for original, duplicate in pairs
            ],
            origin=origin,
        )

    async def get_operation(
        self, request: pb.GetOperationRequest, customer_id: str
    ) -> pb.GetOperationResponse:
        """An operation; a customer's (``customer_id``) only, unless the caller is an admin ("")."""
        async with self._pool.acquire() as connection:
            found = await operation_store.get_operation(
                connection, request.workspace_id, request.operation_id
            )
        if found is None or (customer_id and found.stripe_customer_id != customer_id):
            raise errors.not_found("operation")
        return pb.GetOperationResponse(operation=convert.operation(found))
