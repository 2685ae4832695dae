"""The billing gateway's gRPC layer: validates, scopes every customer call to the
assertion's Stripe customer, and hands writes to the ledger."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import grpc

from askvault.billing.v1 import billing_pb2 as pb
from askvault.billing.v1 import billing_pb2_grpc
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway import (
    convert,
    escalations,
    mirror_reads,
    notices,
    price_moves,
    storage,
    webhook_setup,
    webhooks,
)
from billing_gateway.accounts import AccountDirectory, key_binding, secret_binding
from billing_gateway.confirmation_outbox import ConfirmationOutbox
from billing_gateway.domain import billing, mirroring, recovery
from billing_gateway.ledger import Clock, Ledger, WriteRequest
from billing_gateway.mirror import Freshness, Mirror
from billing_gateway.peers import Peers
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import auth, errors, idempotency
from runtime.database import Connection
from runtime.secretbox import SecretBox

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
_RECOVERY_STATE_NAMES = {value: key for key, value in convert.RECOVERY_STATES.items()}
# A metadata key and value safe to put inside a customers.search query's quoted strings.
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_METADATA_VALUE = re.compile(r"^[^'\"\\\x00-\x1f\x7f]{1,500}$")
_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
_HTTP_URL = re.compile(r"^https?://[^\s]+$")


# The longest a retired webhook signing secret may keep verifying: long enough to roll a new
# secret out, short enough that a forgotten retirement still happens.
MAX_SECRET_OVERLAP_SECONDS = 30 * 86_400
# The longest freshness bound a workspace may set: a week-old answer is already too old.
MAX_MIRROR_AGE_SECONDS = 7 * 86_400


def _not_linked() -> errors.ServiceError:
    return errors.ServiceError(
        errors.Kind.FAILED_PRECONDITION,
        "CUSTOMER_NOT_LINKED",
        "the contact is not linked to a Stripe customer",
    )


def _authorization(context: grpc.aio.ServicerContext) -> str:
    """The caller's ``authorization`` metadata, forwarded as it is to policy (which verifies
    the admin credential itself)."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    return ""


def _page_size(value: int, default: int, maximum: int) -> int:
    return default if value <= 0 else min(value, maximum)


def _created_filter(after: Any, before: Any = None) -> Json:
    created: Json = {}
    if after is not None and after.seconds:
        created["gte"] = after.seconds
    if before is not None and before.seconds:
        created["lt"] = before.seconds
    return created


class BillingGatewayServicer(billing_pb2_grpc.BillingGatewayServiceServicer):
    """Implements askvault.billing.v1.BillingGatewayService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: BillingGatewaySettings,
        secret_box: SecretBox,
        gateway: StripeGateway,
        peers: Peers,
        accounts: AccountDirectory,
        ledger: Ledger,
        ingestion: webhooks.Ingestion,
        clock: Clock,
        mirror: Mirror,
        confirmations: ConfirmationOutbox,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._box = secret_box
        self._stripe = gateway
        self._peers = peers
        self._accounts = accounts
        self._ledger = ledger
        self._ingestion = ingestion
        self._clock = clock
        self._notices = confirmations
        self._mirror = mirror
        self._escalations = escalations.Escalations(
            pool, peers, accounts, notices.Notices(peers, accounts, gateway), self
        )

    # -- escalations (escalations.py) ------------------------------------------------------

    async def CarryOutEscalation(
        self, request: pb.CarryOutEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CarryOutEscalationResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id", max_length=64)
        check.non_empty(request.escalation_id, "escalation_id", max_length=128)
        # Policy's keys are derived from it and the escalation id (at most 200 together).
        check.non_empty(request.idempotency_key, "idempotency_key", max_length=64)
        check.check()
        return await self._escalations.carry_out(request, _authorization(context))

    async def DeclineEscalation(
        self, request: pb.DeclineEscalationRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeclineEscalationResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id", max_length=64)
        check.non_empty(request.escalation_id, "escalation_id", max_length=128)
        check.non_empty(request.reason, "reason", max_length=2048)
        # Policy's keys are derived from it and the escalation id (at most 200 together).
        check.non_empty(request.idempotency_key, "idempotency_key", max_length=64)
        check.check()
        return await self._escalations.decline(request, _authorization(context))

    # -- helpers ---------------------------------------------------------------------------

    async def read_owned(
        self, account: StripeAccount, kind: str, object_id: str, customer_id: str
    ) -> Json:
        """A customer's charge, subscription or invoice, read from Stripe (NOT_FOUND when it
        is someone else's): the facts an escalated action is checked against."""
        return await self._retrieve(account, kind, object_id, customer_id)

    async def _admin(self, context: grpc.aio.ServicerContext, workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _customer(self, workspace_id: str, assertion: str) -> tuple[str, StripeAccount]:
        """The assertion's Stripe customer (the only one this call may touch) and account."""
        check = errors.Validator()
        check.non_empty(workspace_id, "workspace_id")
        check.check()
        verified = await self._peers.verify(assertion, workspace_id)
        if not verified.stripe_customer_id:
            raise _not_linked()
        return verified.stripe_customer_id, await self._accounts.account(workspace_id)

    async def _retrieve(
        self, account: StripeAccount, kind: str, object_id: str, customer_id: str, **params: Any
    ) -> Json:
        """An object of the customer; another customer's (or none) is NOT_FOUND, no data."""
        if not object_id or len(object_id) > 255:
            raise errors.not_found(kind)
        options: Any = params or None

        def retrieve(c: Any) -> Any:
            service = {
                "subscription": c.v1.subscriptions,
                "charge": c.v1.charges,
                "invoice": c.v1.invoices,
            }[kind]
            return service.retrieve_async(object_id, options)

        raw = await self._stripe.call(account, f"{kind}s.retrieve", retrieve)
        found = to_json(raw)
        if billing.expandable_id(found.get("customer")) != customer_id:
            raise errors.not_found(kind)
        # What Stripe just answered is the newest version: the mirror takes it too.
        await self._mirror.take_read(account.workspace_id, [found], raw)
        return found

    async def _product(self, account: StripeAccount, price: Json) -> Json | None:
        product = price.get("product")
        if isinstance(product, dict):
            return product
        if not product:
            return None
        raw = await self._stripe.call(
            account, "products.retrieve", lambda c: c.v1.products.retrieve_async(str(product))
        )
        await self._mirror.take_read(account.workspace_id, [to_json(raw)], raw)
        return to_json(raw)

    async def _payment_method(
        self, account: StripeAccount, subscription: Json, customer_id: str
    ) -> Json | None:
        method = subscription.get("default_payment_method")
        if isinstance(method, dict):
            return method
        if not method:
            raw_customer = await self._stripe.call(
                account,
                "customers.retrieve",
                lambda c: c.v1.customers.retrieve_async(
                    customer_id, {"expand": ["invoice_settings.default_payment_method"]}
                ),
            )
            customer = to_json(raw_customer)
            await self._mirror.take_read(account.workspace_id, [customer], raw_customer)
            found = (customer.get("invoice_settings") or {}).get("default_payment_method")
            return found if isinstance(found, dict) else None
        raw = await self._stripe.call(
            account,
            "payment_methods.retrieve",
            lambda c: c.v1.payment_methods.retrieve_async(str(method)),
        )
        await self._mirror.take_read(account.workspace_id, [to_json(raw)], raw)
        return to_json(raw)

    async def _subscription_pb(
        self, account: StripeAccount, workspace_id: str, customer_id: str, subscription_id: str
    ) -> tuple[pb.Subscription, Json, Json | None]:
        """The subscription as the contract shows it, with its raw form and product."""
        sub = await self._retrieve(
            account,
            "subscription",
            subscription_id,
            customer_id,
            expand=["default_payment_method", "latest_invoice", "items.data.price.product"],
        )
        item = billing.first_item(sub) or {}
        price = item.get("price") or None
        product = await self._product(account, price) if price else None
        method = await self._payment_method(account, sub, customer_id)
        latest = sub.get("latest_invoice") if isinstance(sub.get("latest_invoice"), dict) else None
        message = await self._subscription_message(
            workspace_id, customer_id, sub, price, product, method, latest
        )
        return message, sub, product

    async def _subscription_message(
        self,
        workspace_id: str,
        customer_id: str,
        sub: Json,
        price: Json | None,
        product: Json | None,
        method: Json | None,
        latest: Json | None,
    ) -> pb.Subscription:
        message = convert.subscription(
            sub,
            price=price,
            product=product,
            payment_method=method,
            latest_invoice=latest,
            in_place=billing.plan_change_in_place(sub, method),
        )
        async with self._pool.acquire() as connection:
            pending = await storage.pending_cancellation(
                connection, workspace_id, customer_id, str(sub["id"])
            )
        if pending is not None:
            message.scheduled_cancellation.CopyFrom(convert.operation(pending))
        return message

    async def _freshness(self, workspace_id: str) -> Freshness:
        async with self._pool.acquire() as connection:
            return await self._mirror.freshness(connection, workspace_id)

    def _from_stripe(self) -> pb.ReadOrigin:
        return pb.ReadOrigin(source=pb.READ_SOURCE_STRIPE, as_of=convert.timestamp(self._clock()))

    @staticmethod
    def _from_mirror(as_of: datetime) -> pb.ReadOrigin:
        return pb.ReadOrigin(source=pb.READ_SOURCE_MIRROR, as_of=convert.timestamp(as_of))

    async def _subscription_from_mirror(
        self, workspace_id: str, customer_id: str, subscription_id: str
    ) -> pb.GetSubscriptionResponse | None:
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            parts = await mirror_reads.subscription(
                connection, workspace_id, customer_id, subscription_id, freshness, self._clock()
            )
        if parts is None:
            return None
        origin = self._from_mirror(parts.as_of)
        if parts.subscription is None:
            return pb.GetSubscriptionResponse(subscription_count=0, origin=origin)
        message = await self._subscription_message(
            workspace_id,
            customer_id,
            parts.subscription,
            parts.price,
            parts.product,
            parts.payment_method,
            parts.latest_invoice,
        )
        upcoming = mirroring.next_invoice_amount(parts.subscription)
        if upcoming is not None:
            message.next_invoice_amount.CopyFrom(convert.money(*upcoming))
        return pb.GetSubscriptionResponse(
            subscription=message, subscription_count=parts.count, origin=origin
        )

    def _write(
        self,
        request: Any,
        action: str,
        grant_id: str,
        customer_id: str,
        target_id: str,
        details: policy_pb2.ActionDetails,
        parameters: Json,
    ) -> WriteRequest:
        check = errors.Validator()
        check.non_empty(grant_id, "grant_id")
        check.check()
        idempotency.require_key(request.idempotency_key)
        return WriteRequest(
            workspace_id=request.workspace_id,
            idempotency_key=request.idempotency_key,
            fingerprint=idempotency.fingerprint(request),
            action=action,
            grant_id=grant_id,
            stripe_customer_id=customer_id,
            target_id=target_id,
            details=details,
            parameters=parameters,
        )

    # -- reads -----------------------------------------------------------------------------

    async def SyncContactTags(
        self, request: pb.SyncContactTagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncContactTagsResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )

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
                item["price"]["product"] = await self._product(account, item["price"])
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

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSubscriptionResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        answered = await self._subscription_from_mirror(
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
            return pb.GetSubscriptionResponse(subscription_count=0, origin=self._from_stripe())
        message, sub, _ = await self._subscription_pb(
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
            subscription=message, subscription_count=len(subscriptions), origin=self._from_stripe()
        )

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
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
        page = await self._customer_page(
            request.workspace_id,
            mirroring.INVOICE,
            customer_id,
            storage.MirrorQuery(
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
                origin=self._from_mirror(page.as_of),
            )
        listed = await self._stripe.call(
            account, "invoices.list", lambda c: c.v1.invoices.list_async(params)
        )
        invoices = [to_json(invoice) for invoice in listed.data]
        await self._mirror.take_read(request.workspace_id, invoices, listed)
        return pb.ListInvoicesResponse(
            invoices=[convert.invoice(invoice) for invoice in invoices],
            next_page_token=str(invoices[-1]["id"]) if listed.has_more and invoices else "",
            origin=self._from_stripe(),
        )

    async def _customer_page(
        self,
        workspace_id: str,
        object_type: str,
        customer_id: str,
        query: storage.MirrorQuery,
        page_token: str,
    ) -> mirror_reads.Page | None:
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            return await mirror_reads.customer_objects(
                connection,
                workspace_id,
                object_type,
                customer_id,
                query,
                page_token,
                freshness,
                self._clock(),
            )

    async def _charges(
        self, account: StripeAccount, customer_id: str, params: Json, page_token: str = ""
    ) -> tuple[list[Json], bool, pb.ReadOrigin]:
        """A page of the customer's charges: from the mirror, or from Stripe."""
        created = params.get("created") or {}
        page = await self._customer_page(
            account.workspace_id,
            mirroring.CHARGE,
            customer_id,
            storage.MirrorQuery(created_gte=created.get("gte"), limit=int(params["limit"])),
            page_token,
        )
        if page is not None:
            return page.objects, page.has_more, self._from_mirror(page.as_of)
        query: Any = {"customer": customer_id, **params}
        if page_token:
            query["starting_after"] = page_token
        listed = await self._stripe.call(
            account, "charges.list", lambda c: c.v1.charges.list_async(query)
        )
        charges = [to_json(charge) for charge in listed.data]
        await self._mirror.take_read(account.workspace_id, charges, listed)
        return charges, bool(listed.has_more), self._from_stripe()

    async def ListCharges(
        self, request: pb.ListChargesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListChargesResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        params: Any = {"limit": _page_size(request.page_size, 20, 100)}
        if request.HasField("created_after"):
            params["created"] = _created_filter(request.created_after)
        charges, has_more, origin = await self._charges(
            account, customer_id, params, request.page_token
        )
        return pb.ListChargesResponse(
            charges=[convert.charge(charge) for charge in charges],
            next_page_token=str(charges[-1]["id"]) if has_more and charges else "",
            origin=origin,
        )

    async def GetCharge(
        self, request: pb.GetChargeRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetChargeResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
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
                charge=convert.charge(held[0]), origin=self._from_mirror(held[1])
            )
        found = await self._retrieve(account, "charge", request.charge_id, customer_id)
        return pb.GetChargeResponse(charge=convert.charge(found), origin=self._from_stripe())

    async def FindDuplicateCharges(
        self, request: pb.FindDuplicateChargesRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindDuplicateChargesResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        window = request.window.seconds if request.HasField("window") else 86_400
        lookback = request.lookback.seconds if request.HasField("lookback") else 90 * 86_400
        check = errors.Validator()
        check.require(window > 0, "window", "must be positive")
        check.require(lookback > 0, "lookback", "must be positive")
        check.check()
        since = int(time.time()) - lookback
        charges, _, origin = await self._charges(
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

    async def FindCustomers(
        self, request: pb.FindCustomersRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindCustomersResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        by_metadata = request.HasField("metadata")
        asked = [bool(request.email), by_metadata, bool(request.stripe_customer_id)]
        check.require(
            sum(asked) == 1,
            "email",
            "exactly one of email, metadata and stripe_customer_id is required",
        )
        if request.email:
            check.non_empty(request.email, "email", max_length=320)
        if by_metadata:
            check.require(
                bool(_METADATA_KEY.match(request.metadata.key)),
                "metadata.key",
                "[A-Za-z0-9_-]{1,40}",
            )
            check.require(
                bool(_METADATA_VALUE.match(request.metadata.value)),
                "metadata.value",
                "1 to 500 characters, without quotes, backslashes or control characters",
            )
        if request.stripe_customer_id:
            check.require(
                bool(_CUSTOMER_ID.match(request.stripe_customer_id)),
                "stripe_customer_id",
                "must be a Stripe customer id (cus_...)",
            )
        check.check()
        account = await self._accounts.account(request.workspace_id)
        held = await self._customers_from_mirror(request)
        if held is not None:
            return held
        if by_metadata:
            found_by_metadata = await self._find_by_metadata(account, request.metadata)
            found_by_metadata.origin.CopyFrom(self._from_stripe())
            return found_by_metadata
        if request.stripe_customer_id:
            found_by_id = await self._find_by_id(account, request.stripe_customer_id)
            found_by_id.origin.CopyFrom(self._from_stripe())
            return found_by_id
        wanted = request.email.strip().lower()
        found: dict[str, str] = {}
        for email in dict.fromkeys((request.email.strip(), wanted)):
            listed = await self._list_customers(account, email)
            for customer in listed.data:
                if str(customer.email or "").lower() == wanted:
                    found[str(customer.id)] = str(customer.email)
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(stripe_customer_id=customer_id, email=email)
                for customer_id, email in found.items()
            ],
            origin=self._from_stripe(),
        )

    async def _customers_from_mirror(
        self, request: pb.FindCustomersRequest
    ) -> pb.FindCustomersResponse | None:
        by_metadata = request.HasField("metadata")
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, request.workspace_id)
            held = await mirror_reads.customers(
                connection,
                request.workspace_id,
                customer_id=request.stripe_customer_id,
                email=request.email.strip(),
                metadata=(request.metadata.key, request.metadata.value) if by_metadata else None,
                freshness=freshness,
                now=self._clock(),
            )
        if held is None:
            return None
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(
                    stripe_customer_id=str(customer["id"]),
                    email=str(customer.get("email") or ""),
                    metadata_value=(
                        str((customer.get("metadata") or {}).get(request.metadata.key, ""))
                        if by_metadata
                        else ""
                    ),
                )
                for customer in held.customers
            ],
            origin=self._from_mirror(held.as_of),
        )

    async def _find_by_metadata(
        self, account: StripeAccount, wanted: pb.MetadataQuery
    ) -> pb.FindCustomersResponse:
        # Key and value were validated to hold no quote or backslash, so they cannot break
        # out of the query's quoted strings. Stripe's search index lags writes by up to a
        # minute; a customer created just now may be found on a later turn.
        query: Any = {
            "query": f"metadata['{wanted.key}']:'{wanted.value}'",
            "limit": 10,
        }
        result = await self._stripe.call(
            account, "customers.search", lambda c: c.v1.customers.search_async(query)
        )
        customers = []
        for customer in result.data:
            metadata = to_json(customer).get("metadata") or {}
            value = str(metadata.get(wanted.key, ""))
            # Search matching is Stripe's; the exact value is ours to check.
            if value == wanted.value:
                customers.append(
                    pb.StripeCustomer(
                        stripe_customer_id=str(customer.id),
                        email=str(customer.email or ""),
                        metadata_value=value,
                    )
                )
        return pb.FindCustomersResponse(customers=customers)

    async def _find_by_id(
        self, account: StripeAccount, customer_id: str
    ) -> pb.FindCustomersResponse:
        try:
            customer = await self._stripe.call(
                account,
                "customers.retrieve",
                lambda c: c.v1.customers.retrieve_async(customer_id),
            )
        except errors.ServiceError as error:
            if error.kind is errors.Kind.NOT_FOUND:
                return pb.FindCustomersResponse()
            raise
        if getattr(customer, "deleted", False):
            return pb.FindCustomersResponse()
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(
                    stripe_customer_id=str(customer.id), email=str(customer.email or "")
                )
            ]
        )

    async def _list_customers(self, account: StripeAccount, email: str) -> Any:
        query: Any = {"email": email, "limit": 100}
        return await self._stripe.call(
            account, "customers.list", lambda c: c.v1.customers.list_async(query)
        )

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPlansResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        account = await self._accounts.account(request.workspace_id)
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, request.workspace_id)
            held = await mirror_reads.catalog(
                connection,
                request.workspace_id,
                request.currency.lower(),
                freshness,
                self._clock(),
            )
        if held is not None:
            return self._plans(held.plans, self._from_mirror(held.as_of))
        params: Any = {
            "active": True,
            "type": "recurring",
            "limit": 100,
            "expand": ["data.product"],
        }
        if request.currency:
            params["currency"] = request.currency.lower()
        listed = await self._stripe.call(
            account, "prices.list", lambda c: c.v1.prices.list_async(params)
        )
        prices = [to_json(p) for p in listed.data]
        await self._mirror.take_read(request.workspace_id, prices, listed)
        found: list[tuple[Json, Json | None]] = []
        for price in prices:
            product = price.get("product") if isinstance(price.get("product"), dict) else None
            if product is not None and not product.get("active", True):
                continue
            if request.currency and price.get("currency") != request.currency.lower():
                continue
            found.append((price, product))
        return self._plans(found, self._from_stripe())

    @staticmethod
    def _plans(
        found: list[tuple[Json, Json | None]], origin: pb.ReadOrigin
    ) -> pb.ListPlansResponse:
        plans = [convert.plan(price, product) for price, product in found]
        plans.sort(key=lambda plan: (plan.amount.currency, plan.amount.amount_minor, plan.name))
        return pb.ListPlansResponse(plans=plans, origin=origin)

    async def _price(
        self, account: StripeAccount, price_id: str, usable_only: bool = True
    ) -> tuple[Json, Json | None]:
        if not price_id or len(price_id) > 255:
            raise errors.not_found("price")
        raw = await self._stripe.call(
            account,
            "prices.retrieve",
            lambda c: c.v1.prices.retrieve_async(price_id, {"expand": ["product"]}),
        )
        price = to_json(raw)
        await self._mirror.take_read(account.workspace_id, [price], raw)
        if usable_only and (not price.get("active", True) or not price.get("recurring")):
            raise errors.not_found("price")
        return price, await self._product(account, price)

    async def _switchable(self, account: StripeAccount, sub: Json, price_id: str) -> Json | None:
        """The target price's product, once price_moves lets the subscription move to it."""
        target, product = await self._price(account, price_id, usable_only=False)
        listed = await self._peers.self_serve_price_ids(account.workspace_id)
        price_moves.check(target, (billing.first_item(sub) or {}).get("price"), listed=bool(listed))
        return product

    async def _current_from_mirror(
        self, workspace_id: str, customer_id: str, subscription_id: str
    ) -> tuple[pb.Subscription, Json] | None:
        """The subscription a plan change would apply to, from the mirror (None: ask Stripe)."""
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, workspace_id)
            parts = await mirror_reads.subscription(
                connection, workspace_id, customer_id, subscription_id, freshness, self._clock()
            )
        if parts is None or parts.subscription is None:
            return None
        if not subscription_id and parts.subscription.get("status") in mirroring.ENDED:
            # As Stripe's default list: an ended subscription is not the current one.
            return None
        message = await self._subscription_message(
            workspace_id,
            customer_id,
            parts.subscription,
            parts.price,
            parts.product,
            parts.payment_method,
            parts.latest_invoice,
        )
        return message, parts.subscription

    async def _target_price(
        self, account: StripeAccount, price_id: str
    ) -> tuple[Json, Json | None]:
        """An active recurring price and its product: from the mirror, else from Stripe."""
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, account.workspace_id)
            held = await mirror_reads.price(
                connection, account.workspace_id, price_id, freshness, self._clock()
            )
        if held is not None:
            return held
        return await self._price(account, price_id)

    async def _current_subscription_id(
        self, account: StripeAccount, customer_id: str, subscription_id: str
    ) -> str:
        if subscription_id:
            return subscription_id
        listed = await self._stripe.call(
            account,
            "subscriptions.list",
            lambda c: c.v1.subscriptions.list_async({"customer": customer_id, "limit": 100}),
        )
        chosen = billing.pick_subscription([to_json(sub) for sub in listed.data])
        if chosen is None:
            raise errors.not_found("subscription")
        return str(chosen["id"])

    async def PreviewPlanChange(
        self, request: pb.PreviewPlanChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewPlanChangeResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        # The subscription and the target price from the mirror when it holds them fresh;
        # the proration is Stripe's own computation, always asked of Stripe.
        held = await self._current_from_mirror(
            request.workspace_id, customer_id, request.subscription_id
        )
        if held is not None:
            current, sub = held
            subscription_id = str(sub["id"])
        else:
            subscription_id = await self._current_subscription_id(
                account, customer_id, request.subscription_id
            )
            current, sub, _ = await self._subscription_pb(
                account, request.workspace_id, customer_id, subscription_id
            )
        target_price, target_product = await self._target_price(account, request.target_price_id)
        target = convert.plan(target_price, target_product)
        gained, lost = billing.features_diff(current.plan.features, target.features)
        response = pb.PreviewPlanChangeResponse(
            current_plan=current.plan,
            target_plan=target,
            price_difference=convert.money(
                target.amount.amount_minor - current.plan.amount.amount_minor,
                target.amount.currency,
            ),
            features_gained=gained,
            features_lost=lost,
            subscription_id=subscription_id,
            plan_change_in_place=current.plan_change_in_place,
        )
        now = int(time.time())
        response.effective_at.FromSeconds(now)
        if current.HasField("current_period_end"):
            response.next_invoice_at.CopyFrom(current.current_period_end)
        item = billing.first_item(sub)
        if item is not None and current.plan_change_in_place:
            preview = to_json(
                await self._stripe.call(
                    account,
                    "invoices.create_preview",
                    lambda c: c.v1.invoices.create_preview_async(
                        {
                            "customer": customer_id,
                            "subscription": subscription_id,
                            "subscription_details": {
                                "items": [{"id": str(item["id"]), "price": target.price_id}],
                                "proration_behavior": "create_prorations",
                                "proration_date": now,
                            },
                        }
                    ),
                )
            )
            response.proration_amount.CopyFrom(
                convert.money(billing.proration_amount(preview), preview.get("currency"))
            )
        return response

    # -- writes ----------------------------------------------------------------------------

    async def RefundCharge(
        self, request: pb.RefundChargeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefundChargeResponse:
        check = errors.Validator()
        check.non_empty(request.charge_id, "charge_id")
        check.require(request.amount.amount_minor > 0, "amount.amount_minor", "must be positive")
        check.non_empty(request.amount.currency, "amount.currency", max_length=3)
        check.check()
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        return await self.refund_for(request, customer_id, account)

    async def refund_for(
        self, request: pb.RefundChargeRequest, customer_id: str, account: StripeAccount
    ) -> pb.RefundChargeResponse:
        """The refund of one of ``customer_id``'s charges under the request's grant: a
        visitor's (RefundCharge) or an approved escalation's (escalations.py)."""
        charge = await self._retrieve(account, "charge", request.charge_id, customer_id)
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
        write = self._write(
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
            operation: storage.OperationRecord, refund: Json
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

    async def ChangePlan(
        self, request: pb.ChangePlanRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangePlanResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.non_empty(request.target_price_id, "target_price_id")
        check.check()
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        return await self.change_plan_for(request, customer_id, account)

    async def change_plan_for(
        self, request: pb.ChangePlanRequest, customer_id: str, account: StripeAccount
    ) -> pb.ChangePlanResponse:
        """A plan change of one of ``customer_id``'s subscriptions under the request's grant."""
        current, sub, _ = await self._subscription_pb(
            account, request.workspace_id, customer_id, request.subscription_id
        )
        await self._in_place_or_refuse(current)
        target_product = await self._switchable(account, sub, request.target_price_id)
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
        write = self._write(
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
        )

        async def respond(operation: storage.OperationRecord, _: Json) -> pb.ChangePlanResponse:
            after, _sub, _product = await self._subscription_pb(
                account, request.workspace_id, customer_id, request.subscription_id
            )
            return pb.ChangePlanResponse(
                operation=convert.operation(operation), subscription=after, features_gained=gained
            )

        changed = await self._ledger.execute(write, respond, pb.ChangePlanResponse)
        await self._notices.confirm(
            request.workspace_id,
            customer_id,
            notifier_pb2.TEMPLATE_PLAN_CHANGE_CONFIRMATION,
            {
                "new_plan": notices.plan_label(changed.subscription.plan),
                "old_plan": notices.plan_label(current.plan),
                "effective_date": notices.display_date(
                    convert.from_unix(changed.operation.updated_at.seconds)
                ),
                "unlocks": ", ".join(changed.features_gained),
                "loses": ", ".join(lost),
            },
            operation_id=changed.operation.operation_id,
        )
        return changed

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelSubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.check()
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        return await self.cancel_for(request, customer_id, account)

    async def cancel_for(
        self, request: pb.CancelSubscriptionRequest, customer_id: str, account: StripeAccount
    ) -> pb.CancelSubscriptionResponse:
        """A cancellation (scheduled at now + grace) under the request's grant."""
        current, _sub, _product = await self._subscription_pb(
            account, request.workspace_id, customer_id, request.subscription_id
        )
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id, subscription_id=request.subscription_id
        )
        write = self._write(
            request,
            "cancel_subscription",
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {"subscription": request.subscription_id},
        )
        operation = await self._ledger.schedule_cancellation(write)
        if operation.state == storage.SCHEDULED and operation.run_at is not None:
            await self._notices.confirm(
                request.workspace_id,
                customer_id,
                notifier_pb2.TEMPLATE_CANCELLATION_SCHEDULED,
                {
                    "cancel_at": notices.display_date(operation.run_at),
                    "plan_name": notices.plan_label(current.plan),
                },
                operation_id=operation.operation_id,
            )
        return pb.CancelSubscriptionResponse(operation=convert.operation(operation))

    async def UndoCancellation(
        self, request: pb.UndoCancellationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UndoCancellationResponse:
        customer_id, _ = await self._customer(request.workspace_id, request.identity_assertion)
        operation_id = request.operation_id
        if not operation_id:
            async with self._pool.acquire() as connection:
                pending = await storage.pending_cancellation(
                    connection, request.workspace_id, customer_id
                )
            if pending is None:
                raise errors.not_found("scheduled cancellation")
            operation_id = pending.operation_id
        voided: list[storage.OperationRecord] = []

        async def effect(connection: Connection) -> pb.UndoCancellationResponse:
            found = await storage.get_operation(connection, request.workspace_id, operation_id)
            if found is None or found.stripe_customer_id != customer_id:
                raise errors.not_found("operation")
            operation, undone = await self._ledger.undo_cancellation(
                connection, operation_id, request.workspace_id
            )
            if undone:
                voided.append(operation)
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
            await self._notices.confirm(
                request.workspace_id,
                customer_id,
                notifier_pb2.TEMPLATE_CANCELLATION_UNDONE,
                {},
                operation_id=response.operation.operation_id,
            )
        return response

    async def _subscription_write(
        self,
        request: Any,
        action: str,
        parameters: Json,
    ) -> pb.PauseSubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.check()
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        return await self.subscription_write_for(request, action, parameters, customer_id, account)

    async def subscription_write_for(
        self,
        request: Any,
        action: str,
        parameters: Json,
        customer_id: str,
        account: StripeAccount,
    ) -> pb.PauseSubscriptionResponse:
        """A pause or resume of one of ``customer_id``'s subscriptions under the grant."""
        await self._retrieve(account, "subscription", request.subscription_id, customer_id)
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id, subscription_id=request.subscription_id
        )
        write = self._write(
            request,
            action,
            request.grant_id,
            customer_id,
            request.subscription_id,
            details,
            {"subscription": request.subscription_id, **parameters},
        )

        async def respond(
            operation: storage.OperationRecord, _: Json
        ) -> pb.PauseSubscriptionResponse:
            after, _sub, _product = await self._subscription_pb(
                account, request.workspace_id, customer_id, request.subscription_id
            )
            return pb.PauseSubscriptionResponse(
                operation=convert.operation(operation), subscription=after
            )

        # Pause and resume answer the same shape; the ledger stores it as a pause response.
        return await self._ledger.execute(write, respond, pb.PauseSubscriptionResponse)

    async def PauseSubscription(
        self, request: pb.PauseSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseSubscriptionResponse:
        resumes_at = request.resumes_at.seconds if request.HasField("resumes_at") else None
        return await self._subscription_write(
            request, "pause_subscription", {"resumes_at": resumes_at}
        )

    async def ResumeSubscription(
        self, request: pb.ResumeSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeSubscriptionResponse:
        done = await self._subscription_write(request, "resume_subscription", {})
        return pb.ResumeSubscriptionResponse(
            operation=done.operation, subscription=done.subscription
        )

    async def StartResubscription(
        self, request: pb.StartResubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartResubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.non_empty(request.target_price_id, "target_price_id")
        check.require(
            len(request.success_url) <= 2048
            and (not request.success_url or _HTTP_URL.match(request.success_url) is not None),
            "success_url",
            "an http(s) URL of at most 2048 characters, or empty",
        )
        check.check()
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        current, sub, _ = await self._subscription_pb(
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
        await self._switchable(account, sub, request.target_price_id)
        types = list((sub.get("payment_settings") or {}).get("payment_method_types") or [])
        details = policy_pb2.ActionDetails(
            stripe_customer_id=customer_id,
            subscription_id=request.subscription_id,
            target_price_id=request.target_price_id,
        )
        write = self._write(
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
            operation: storage.OperationRecord, session: Json
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

    async def RetryInvoicePayment(
        self, request: pb.RetryInvoicePaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryInvoicePaymentResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        return await self.retry_payment_for(request, customer_id, account)

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
            await self._retrieve(account, "invoice", invoice_id, customer_id)
        details = policy_pb2.ActionDetails(stripe_customer_id=customer_id, invoice_id=invoice_id)
        write = self._write(
            request,
            "retry_payment",
            request.grant_id,
            customer_id,
            invoice_id,
            details,
            {"invoice": invoice_id},
        )

        async def respond(
            operation: storage.OperationRecord, invoice: Json
        ) -> pb.RetryInvoicePaymentResponse:
            return pb.RetryInvoicePaymentResponse(
                operation=convert.operation(operation),
                invoice=convert.invoice(invoice),
                paid=invoice.get("status") == "paid",
            )

        return await self._ledger.execute(write, respond, pb.RetryInvoicePaymentResponse)

    async def CreatePaymentMethodUpdateLink(
        self, request: pb.CreatePaymentMethodUpdateLinkRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreatePaymentMethodUpdateLinkResponse:
        customer_id, account = await self._customer(
            request.workspace_id, request.identity_assertion
        )
        check = errors.Validator()
        check.require(len(request.return_url) <= 2048, "return_url", "at most 2048 characters")
        check.check()

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

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOperationResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.operation_id, "operation_id")
        check.check()
        # A customer sees their own operations only (another customer's id is NOT_FOUND,
        # as for every read); without an assertion only an admin may look.
        customer_id = ""
        if request.identity_assertion:
            customer_id, _ = await self._customer(request.workspace_id, request.identity_assertion)
        else:
            await self._admin(context, request.workspace_id)
        async with self._pool.acquire() as connection:
            found = await storage.get_operation(
                connection, request.workspace_id, request.operation_id
            )
        if found is None or (customer_id and found.stripe_customer_id != customer_id):
            raise errors.not_found("operation")
        return pb.GetOperationResponse(operation=convert.operation(found))

    # -- webhooks --------------------------------------------------------------------------

    async def IngestStripeEvent(
        self, request: pb.IngestStripeEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.IngestStripeEventResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(bool(request.payload), "payload", "must not be empty")
        check.check()
        event_id, duplicate = await self._ingestion.ingest(
            request.workspace_id, request.payload, request.signature_header
        )
        return pb.IngestStripeEventResponse(event_id=event_id, duplicate=duplicate)

    # -- admin -----------------------------------------------------------------------------

    async def ConnectAccount(
        self, request: pb.ConnectAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConnectAccountResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.secret_key, "secret_key", max_length=512)
        check.require(
            request.secret_key.startswith(("sk_", "rk_")), "secret_key", "must be a secret key"
        )
        check.require(
            request.webhook_url.startswith(("https://", "http://")),
            "webhook_url",
            "must be an http(s) URL",
        )
        check.check()
        account = StripeAccount(
            request.workspace_id, request.secret_key, request.connected_account_id
        )

        async def effect(connection: Connection) -> pb.ConnectAccountResponse:
            details = await self._stripe.call(
                account, "account.retrieve", lambda c: c.v1.accounts.retrieve_current_async()
            )
            endpoint = await self._stripe.call(
                account,
                "webhook_endpoints.create",
                lambda c: c.v1.webhook_endpoints.create_async(
                    {
                        "url": request.webhook_url,
                        "enabled_events": cast(Any, list(webhooks.NEEDED_EVENTS)),
                        "description": "AskVault billing skill",
                    },
                    {"idempotency_key": f"askvault-connect-{request.idempotency_key}"},
                ),
            )
            livemode = bool(getattr(details, "livemode", False) or account.livemode)
            await storage.save_account(
                connection,
                request.workspace_id,
                self._box.seal(request.secret_key.encode(), key_binding(request.workspace_id)),
                request.connected_account_id,
                livemode,
                str(endpoint.id),
                request.webhook_url,
                list(webhooks.NEEDED_EVENTS),
            )
            await storage.add_webhook_secret(
                connection,
                request.workspace_id,
                str(endpoint.id),
                self._box.seal(
                    str(endpoint.secret).encode(),
                    secret_binding(request.workspace_id, str(endpoint.id)),
                ),
            )
            # The mirror copies every list of the account, and catches up on events from now.
            await self._mirror.start(connection, request.workspace_id)
            return pb.ConnectAccountResponse(
                webhook_endpoint_id=str(endpoint.id),
                livemode=livemode,
                enabled_events=list(webhooks.NEEDED_EVENTS),
            )

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.ConnectAccountResponse,
            effect,
        )
        self._accounts.forget(request.workspace_id)
        return response

    async def CheckWebhookSetup(
        self, request: pb.CheckWebhookSetupRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckWebhookSetupResponse:
        await self._admin(context, request.workspace_id)
        return await webhook_setup.check(
            self._pool, self._stripe, self._accounts, request.workspace_id, self._clock()
        )

    async def RetireWebhookSecret(
        self, request: pb.RetireWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetireWebhookSecretResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.secret_id, "secret_id")
        check.require(
            request.overlap_seconds <= MAX_SECRET_OVERLAP_SECONDS,
            "overlap_seconds",
            f"at most {MAX_SECRET_OVERLAP_SECONDS}",
        )
        check.check()

        async def effect(connection: Connection) -> pb.RetireWebhookSecretResponse:
            now = self._clock()
            retired = await storage.retire_webhook_secret(
                connection,
                request.workspace_id,
                request.secret_id,
                now + timedelta(seconds=request.overlap_seconds),
            )
            if retired is None:
                raise errors.not_found("webhook secret")
            return pb.RetireWebhookSecretResponse(secret=webhook_setup.secret_pb(retired, now))

        response = await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.RetireWebhookSecretResponse,
            effect,
        )
        self._accounts.forget(request.workspace_id)
        return response

    async def ListRecoveryCases(
        self, request: pb.ListRecoveryCasesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRecoveryCasesResponse:
        await self._admin(context, request.workspace_id)
        limit = _page_size(request.page_size, 50, 500)
        after: tuple[datetime, str] | None = None
        if request.page_token:
            try:
                stamp, _, case_id = (
                    base64.urlsafe_b64decode(request.page_token).decode().partition("|")
                )
                after = (datetime.fromisoformat(stamp), case_id)
            except ValueError:
                raise errors.invalid_argument(
                    errors.FieldViolation("page_token", "not a token of this list")
                ) from None
        state = _RECOVERY_STATE_NAMES.get(request.state, "")
        async with self._pool.acquire() as connection:
            cases = await storage.list_cases(
                connection, request.workspace_id, state, after, limit + 1
            )
            page = cases[:limit]
            timelines = await storage.case_events(
                connection, request.workspace_id, [case.case_id for case in page]
            )
        token = ""
        if len(cases) > limit:
            last = page[-1]
            token = base64.urlsafe_b64encode(
                f"{last.opened_at.isoformat()}|{last.case_id}".encode()
            ).decode()
        return pb.ListRecoveryCasesResponse(
            cases=[
                pb.RecoveryCase(
                    case_id=case.case_id,
                    workspace_id=case.workspace_id,
                    stripe_customer_id=case.stripe_customer_id,
                    invoice_id=case.invoice_id,
                    amount_due=convert.money(case.amount_due_minor, case.currency),
                    state=convert.RECOVERY_STATES.get(case.state, pb.RECOVERY_STATE_UNSPECIFIED),
                    opened_at=convert.timestamp(case.opened_at),
                    closed_at=convert.timestamp(case.closed_at),
                    timeline=[
                        pb.RecoveryEvent(
                            occurred_at=convert.timestamp(at), kind=kind, detail=detail
                        )
                        for at, kind, detail in timelines.get(case.case_id, [])
                    ],
                )
                for case in page
            ],
            next_page_token=token,
        )

    async def GetRecoveryStats(
        self, request: pb.GetRecoveryStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRecoveryStatsResponse:
        await self._admin(context, request.workspace_id)
        start = (
            request.start_time.ToDatetime(UTC)
            if request.HasField("start_time")
            else datetime.fromtimestamp(0, UTC)
        )
        end = (
            request.end_time.ToDatetime(UTC)
            if request.HasField("end_time")
            else self._clock() + timedelta(days=1)
        )
        async with self._pool.acquire() as connection:
            outcomes = await storage.case_outcomes(connection, request.workspace_id, start, end)
        figures = recovery.stats(outcomes)
        return pb.GetRecoveryStatsResponse(
            failed=figures.failed,
            recovered_within_48h=figures.recovered_within_48h,
            recovered=figures.recovered,
            recovery_rate=figures.rate,
        )

    # -- the mirror ------------------------------------------------------------------------

    async def GetMirrorStatus(
        self, request: pb.GetMirrorStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMirrorStatusResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        async with self._pool.acquire() as connection:
            backfills = await storage.backfills_of(connection, request.workspace_id)
            freshness = await self._mirror.freshness(connection, request.workspace_id)
            workspace = await storage.mirror_workspace(connection, request.workspace_id)
            count = await storage.count_mirrored(connection, request.workspace_id)
        response = pb.GetMirrorStatusResponse(
            backfills=[
                pb.MirrorBackfill(
                    object_type=backfill.object_type,
                    done=backfill.done,
                    objects_copied=backfill.objects_copied,
                    pages_copied=backfill.pages_copied,
                    started_at=convert.timestamp(backfill.started_at),
                    finished_at=convert.timestamp(backfill.finished_at),
                    last_error=backfill.last_error,
                )
                for backfill in backfills
            ],
            backfill_done=freshness.complete,
            objects=count,
        )
        if workspace is not None and workspace.caught_up_to is not None:
            response.caught_up_to.FromSeconds(workspace.caught_up_to)
        response.max_age.FromSeconds(freshness.max_age_seconds)
        return response

    async def UpdateMirrorSettings(
        self, request: pb.UpdateMirrorSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateMirrorSettingsResponse:
        await self._admin(context, request.workspace_id)
        seconds = request.max_age.seconds if request.HasField("max_age") else 0
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(
            0 <= seconds <= MAX_MIRROR_AGE_SECONDS and request.max_age.nanos == 0,
            "max_age",
            f"whole seconds from 1 to {MAX_MIRROR_AGE_SECONDS}, or unset for the default",
        )
        check.check()
        idempotency.require_key(request.idempotency_key)
        await self._accounts.account(request.workspace_id)

        async def effect(connection: Connection) -> pb.UpdateMirrorSettingsResponse:
            await storage.set_mirror_max_age(connection, request.workspace_id, seconds or None)
            response = pb.UpdateMirrorSettingsResponse()
            response.max_age.FromSeconds(seconds or self._settings.mirror_max_age_seconds)
            return response

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.UpdateMirrorSettingsResponse,
            effect,
        )
