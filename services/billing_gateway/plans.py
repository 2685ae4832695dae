"""ListPlans and PreviewPlanChange: the workspace's active recurring prices, and what moving
the customer's subscription to one of them would change (plan, features, price, proration)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import convert, mirror_reads
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import billing
from billing_gateway.ledger import Clock
from billing_gateway.mirror import Mirror
from billing_gateway.reading import CustomerObjects
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json

Json = dict[str, Any]


@dataclass(frozen=True)
class Plans:
    """The workspace's plans and a plan change's preview."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _mirror: Mirror
    _accounts: AccountDirectory
    _clock: Clock
    _objects: CustomerObjects

    async def list_plans(self, request: pb.ListPlansRequest) -> pb.ListPlansResponse:
        """The workspace's active recurring prices, in the request's currency when it names one."""
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
            return self._plans(held.plans, self._objects.from_mirror(held.as_of))
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
        return self._plans(found, self._objects.from_stripe())

    @staticmethod
    def _plans(
        found: list[tuple[Json, Json | None]], origin: pb.ReadOrigin
    ) -> pb.ListPlansResponse:
        plans = [convert.plan(price, product) for price, product in found]
        plans.sort(key=lambda plan: (plan.amount.currency, plan.amount.amount_minor, plan.name))
        return pb.ListPlansResponse(plans=plans, origin=origin)

    async def preview_plan_change(
        self, request: pb.PreviewPlanChangeRequest, customer_id: str, account: StripeAccount
    ) -> pb.PreviewPlanChangeResponse:
        """What moving the customer's subscription to the target price would change."""
        # The subscription and the target price from the mirror when it holds them fresh;
        # the proration is Stripe's own computation, always asked of Stripe.
        held = await self._objects.current_from_mirror(
            request.workspace_id, customer_id, request.subscription_id
        )
        if held is not None:
            current, sub = held
            subscription_id = str(sub["id"])
        else:
            subscription_id = await self._objects.current_subscription_id(
                account, customer_id, request.subscription_id
            )
            current, sub, _ = await self._objects.subscription_pb(
                account, request.workspace_id, customer_id, subscription_id
            )
        target_price, target_product = await self._objects.target_price(
            account, request.target_price_id
        )
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
