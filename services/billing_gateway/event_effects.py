"""What one stored Stripe event does: the mirror, subscriptions' tags, failed-payment recovery
cases and messages. The inbox worker (inbox.py) claims events in batches and applies each here.

Calls to identity and the notifier carry keys derived from the event (or invoice) id, so a
retry after a crash repeats nothing; when one of them is unreachable the event is deferred
with backoff. An event's local writes other than the mirror's come after its last call that
can fail, so a deferred event leaves only mirror versions behind (idempotent, newest wins).
The one exception is the failed-payment message an invoice's customer is told: decided once
and committed on its own before the notifier is asked (``inbox_store.PaymentFailedNotice``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from billing_gateway import (
    adopting,
    case_store,
    convert,
    gateway_metrics,
    inbox_store,
    mirror_reads,
)
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import adoption, billing
from billing_gateway.mirror import Freshness, Mirror
from billing_gateway.notices import Notices, display_date
from billing_gateway.peers import Peers
from billing_gateway.stripe_api import StripeGateway, retrieve_json
from billing_gateway.webhooks import tags_request
from runtime import errors, ids
from runtime.database import Connection

logger = logging.getLogger(__name__)

Json = dict[str, Any]

# Most (workspace, customer) recipient lists the worker keeps between lookups.
_RECIPIENTS_CACHE_MAX = 10_000
# Seconds a batch waits for a second pool connection to commit a failed-payment message's
# decision before it defers the event (a pool held entirely by batches waiting for one more
# would otherwise wait forever).
_DECISION_CONNECTION_WAIT_SECONDS = 5.0


@dataclass
class Burst:
    """What the events of one claimed batch share: the claim's connection (and transaction),
    the time, and each workspace's mirror freshness, read once."""

    connection: Connection
    now: datetime
    freshness: dict[str, Freshness] = field(default_factory=dict)
    # The batch's events take their objects into the mirror one at a time: two of them may
    # carry versions of one embedded object (a product, a payment method).
    mirror_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Metrics of what the batch did, counted once its transaction committed (a batch rolled
    # back is applied again, and must not be counted twice).
    on_commit: list[Callable[[], None]] = field(default_factory=list)


class EventEffects:
    """Applies one stored event: the mirror, subscriptions' tags, recovery cases, messages."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        peers: Peers,
        accounts: AccountDirectory,
        mirror: Mirror,
        *,
        recipients_cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._peers = peers
        self._accounts = accounts
        self._notices = Notices(peers, accounts, gateway)
        self._mirror = mirror
        self._recipients_ttl = recipients_cache_seconds
        self._monotonic = monotonic
        # (workspace, customer) -> (when looked up, recipients): one lookup per burst.
        self._recipients: dict[tuple[str, str], tuple[float, list[notifier_pb2.Recipient]]] = {}

    async def apply(self, burst: Burst, event: inbox_store.StoredEvent, data: Json) -> list[str]:
        """Applies the event (``data``: its parsed payload); returns the effects that could
        not happen (recorded as the event's outcome), and raises ServiceError when the event
        must be tried again."""
        obj: Json = (data.get("data") or {}).get("object") or {}
        kind = event.event_type
        problems: list[str] = []
        # The mirror first, in the same transaction: processed means mirrored.
        async with burst.mirror_turn:
            fetched = await self._mirror.take_event(burst.connection, event, obj)
        performed = adoption.performed_in(kind, obj)
        if performed is not None:
            # In the event's transaction: processed means the ledger has the write.
            await adopting.adopt(burst.connection, event.workspace_id, performed)
        if kind.startswith("customer.subscription."):
            await self._subscription_changed(burst, event, obj, problems)
        elif kind == "invoice.payment_failed":
            await self._payment_failed(burst, event, obj, fetched, problems)
        elif kind in ("invoice.payment_succeeded", "invoice.paid"):
            await self._close_case(burst, event, obj, "recovered", "payment_succeeded")
        elif kind in ("invoice.voided", "invoice.marked_uncollectible"):
            await self._close_case(burst, event, obj, "lost", kind.split(".")[1])
        elif kind == "charge.refunded":
            await self._refunded(burst, event, obj, problems)
        # Any other type: acknowledged, ignored.
        return problems

    async def _freshness(self, burst: Burst, workspace_id: str) -> Freshness:
        found = burst.freshness.get(workspace_id)
        if found is None:
            found = await self._mirror.freshness(burst.connection, workspace_id)
            burst.freshness[workspace_id] = found
        return found

    # -- subscriptions ---------------------------------------------------------------------

    async def _subscription_changed(
        self, burst: Burst, event: inbox_store.StoredEvent, obj: Json, problems: list[str]
    ) -> None:
        customer_id = billing.expandable_id(obj.get("customer"))
        subscription = obj
        from_stripe = False
        if event.event_type != "customer.subscription.deleted":
            # Events arrive in any order and several can share a second: the newest version
            # the mirror holds (it decides by Stripe's times, and has just taken this
            # event's), while it is fresh; else the object as Stripe holds it now.
            held = await mirror_reads.expanded_subscription(
                burst.connection,
                event.workspace_id,
                str(obj.get("id") or ""),
                await self._freshness(burst, event.workspace_id),
                burst.now,
            )
            if held is not None:
                subscription = held
            else:
                found = await self._subscription_from_stripe(event.workspace_id, str(obj["id"]))
                if found is not None:
                    subscription, from_stripe = found, True
        replaced = str(
            (subscription.get("metadata") or {}).get(billing.REPLACES_METADATA_KEY) or ""
        )
        if replaced and subscription.get("status") == "active":
            # Ending another subscription is a money action: only on what Stripe says now.
            confirmed = (
                subscription
                if from_stripe
                else await self._subscription_from_stripe(event.workspace_id, str(obj["id"]))
            )
            if confirmed is not None and confirmed.get("status") == "active":
                really = str(
                    (confirmed.get("metadata") or {}).get(billing.REPLACES_METADATA_KEY) or ""
                )
                if really:
                    await self._end_replaced(
                        event,
                        billing.expandable_id(confirmed.get("customer")),
                        str(confirmed["id"]),
                        really,
                    )
        item = billing.first_item(subscription) or {}
        price = item.get("price") or {}
        product = price.get("product") if isinstance(price.get("product"), dict) else None
        await self._peers.update_tags(
            tags_request(
                event.workspace_id,
                customer_id,
                subscription,
                source_time=event.created_at,
                idempotency_key=f"stripe-event-{event.event_id}-tags",
            )
        )
        if event.event_type == "customer.subscription.deleted":
            ended = obj.get("ended_at") or obj.get("canceled_at")
            ended_at = convert.from_unix(int(ended)) if ended else event.created_at
            await self._notify(
                burst,
                event,
                customer_id,
                notifier_pb2.TEMPLATE_OFFBOARDING,
                {
                    "plan_name": await self._product_name(event.workspace_id, price, product),
                    "ended_at": display_date(ended_at),
                },
                dedup=f"offboarding-{obj.get('id')}",
                problems=problems,
            )

    async def _subscription_from_stripe(
        self, workspace_id: str, subscription_id: str
    ) -> Json | None:
        """The subscription as Stripe holds it now, its price's product expanded; None when
        Stripe has no such subscription."""
        account = await self._accounts.account(workspace_id)
        try:
            return await retrieve_json(
                self._gateway,
                account,
                "subscriptions.retrieve",
                f"/v1/subscriptions/{quote(subscription_id, safe='')}",
                expand=["items.data.price.product"],
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return None

    async def _product_name(self, workspace_id: str, price: Json, product: Json | None) -> str:
        """The plan's name as Stripe holds its product ('' when Stripe has none)."""
        if product is not None:
            return str(product.get("name") or "")
        product_id = billing.expandable_id(price.get("product"))
        if not product_id.startswith("prod_") or len(product_id) > 255:
            return ""
        account = await self._accounts.account(workspace_id)
        try:
            found = await retrieve_json(
                self._gateway,
                account,
                "products.retrieve",
                f"/v1/products/{quote(product_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return ""
        return str(found.get("name") or "")

    async def _end_replaced(
        self, event: inbox_store.StoredEvent, customer_id: str, new_id: str, replaced_id: str
    ) -> None:
        """The subscription a resubscription replaces (StartResubscription, under the grant
        the person confirmed) ends at its period end, now that the new one is active; never
        another customer's, never twice."""
        account = await self._accounts.account(event.workspace_id)
        try:
            old = await retrieve_json(
                self._gateway,
                account,
                "subscriptions.retrieve",
                f"/v1/subscriptions/{quote(replaced_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is errors.Kind.NOT_FOUND:
                return
            raise
        if (
            billing.expandable_id(old.get("customer")) != customer_id
            or old.get("status") == "canceled"
            or old.get("cancel_at_period_end")
        ):
            return
        await self._gateway.call(
            account,
            "subscriptions.update",
            lambda c: c.v1.subscriptions.update_async(
                replaced_id,
                {"cancel_at_period_end": True},
                {"idempotency_key": f"askvault-replaced-by-{new_id}"},
            ),
        )
        logger.info(
            "replaced subscription ends at its period end",
            extra={"subscription_id": replaced_id, "replaced_by": new_id},
        )

    # -- recovery --------------------------------------------------------------------------

    async def _payment_failed(
        self,
        burst: Burst,
        event: inbox_store.StoredEvent,
        invoice: Json,
        fetched: Json | None,
        problems: list[str],
    ) -> None:
        invoice_id = str(invoice.get("id") or "")
        customer_id = billing.expandable_id(invoice.get("customer"))
        # What the customer is told, and the link they follow, come from the invoice as
        # Stripe holds it, never from the payload: a payload signed with a leaked secret
        # must not put its own link (or another customer) into a message. (The mirror may
        # have just read it from Stripe itself: then it is not read twice.)
        authoritative = (
            fetched
            if fetched is not None and fetched.get("id") == invoice_id
            else await self._invoice_from_stripe(event.workspace_id, invoice_id)
        )
        hosted = str((authoritative or {}).get("hosted_invoice_url") or "")
        refused_before = len(problems)
        if authoritative is None:
            problems.append(f"invoice {invoice_id} not found at Stripe: no message")
        elif billing.expandable_id(authoritative.get("customer")) != customer_id:
            problems.append(f"invoice {invoice_id} belongs to another customer: no message")
        elif not hosted:
            problems.append(f"invoice {invoice_id} has no hosted page at Stripe: no message")
        else:
            amount = convert.money(authoritative.get("amount_due"), authoritative.get("currency"))
            # The notifier's payment_failed template: the three ways out are in the template
            # itself (retry now, update card, talk to support); the hosted invoice page is
            # where the card is updated, and stays valid as long as the invoice (a portal
            # session would expire long before the customer reads the email).
            notice = await self._payment_failed_notice(
                burst,
                event.workspace_id,
                invoice_id,
                customer_id,
                {
                    "amount": billing.display_amount(amount.amount_minor, amount.currency),
                    "update_card_url": hosted,
                    "invoice_url": hosted,
                },
            )
            # One message per failed invoice, however many deliveries, attempts or events
            # report it: every report sends the first decision again (the notifier answers
            # with the message it already has under each key).
            await self._notify(
                burst,
                event,
                customer_id,
                notifier_pb2.TEMPLATE_PAYMENT_FAILED,
                notice.variables if notice is not None else {},
                dedup=f"payment-failed-{invoice_id}",
                problems=problems,
                recipients=notice.recipients if notice is not None else [],
            )
        # Written after the last call that can fail: a deferred event writes no case.
        attempt = int(invoice.get("attempt_count") or 1)
        entries = [
            ("payment_failed", f"attempt {attempt}"),
            (
                "message_refused" if len(problems) > refused_before else "message_sent",
                "PAYMENT_FAILED",
            ),
        ]
        messaged = len(problems) == refused_before
        case_id = ids.new_id("rc")
        found = await inbox_store.record_payment_failed(
            burst.connection,
            workspace_id=event.workspace_id,
            case_id=case_id,
            stripe_customer_id=customer_id,
            invoice_id=invoice_id,
            amount_due_minor=int(invoice.get("amount_due") or 0),
            currency=str(invoice.get("currency") or ""),
            occurred_at=event.created_at,
            source_id=event.event_id,
            entries=entries,
        )
        if found is not None:
            if found == case_id:
                burst.on_commit.append(lambda: gateway_metrics.count_case_opened(messaged))
            return
        # The case was opened by a transaction committed after that statement began.
        opened = await case_store.open_case(
            burst.connection,
            workspace_id=event.workspace_id,
            case_id=ids.new_id("rc"),
            stripe_customer_id=customer_id,
            invoice_id=invoice_id,
            amount_due_minor=int(invoice.get("amount_due") or 0),
            currency=str(invoice.get("currency") or ""),
            opened_at=event.created_at,
        )
        if opened is not None:
            burst.on_commit.append(lambda: gateway_metrics.count_case_opened(messaged))
        case = opened or await case_store.case_by_invoice(
            burst.connection, event.workspace_id, invoice_id
        )
        assert case is not None
        for kind, detail in entries:
            await case_store.add_case_event(
                burst.connection, case, event.created_at, kind, detail, event.event_id
            )

    async def _payment_failed_notice(
        self,
        burst: Burst,
        workspace_id: str,
        invoice_id: str,
        customer_id: str,
        variables: dict[str, str],
    ) -> inbox_store.PaymentFailedNotice | None:
        """The invoice's failed-payment message as first decided; decided now (to the
        customer's recipients of the moment, in ``variables``' words) when it never was. None
        while the customer has nobody to tell (nothing is decided: a later report may find
        someone).

        The decision is committed at once, on a connection of its own: the batch may still
        be rolled back after the notifier took the message (a crash, a failing neighbour
        event), and the event processed again once the Stripe customer who stood in for a
        contact has become one; it must then repeat the message the notifier has, not tell
        the customer again under the contact's key."""
        decided = await inbox_store.payment_failed_notice(
            burst.connection, workspace_id, invoice_id
        )
        if decided is not None:
            return decided
        recipients = await self._recipients_of(burst, workspace_id, customer_id)
        if not recipients:
            return None
        proposed = inbox_store.PaymentFailedNotice(recipients, variables)
        try:
            async with self._pool.acquire(timeout=_DECISION_CONNECTION_WAIT_SECONDS) as own:
                return await inbox_store.decide_payment_failed_notice(
                    own, workspace_id, invoice_id, proposed
                )
        except TimeoutError as waited:
            raise errors.ServiceError(
                errors.Kind.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "no database connection to record whom a failed payment is told",
            ) from waited

    async def _invoice_from_stripe(self, workspace_id: str, invoice_id: str) -> Json | None:
        """The invoice as Stripe holds it now; None when Stripe has no such invoice. Other
        failures raise, so the event is tried again later."""
        if not invoice_id.startswith("in_") or len(invoice_id) > 255:
            return None
        account = await self._accounts.account(workspace_id)
        try:
            return await retrieve_json(
                self._gateway,
                account,
                "invoices.retrieve",
                f"/v1/invoices/{quote(invoice_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return None

    async def _close_case(
        self,
        burst: Burst,
        event: inbox_store.StoredEvent,
        invoice: Json,
        state: str,
        kind: str,
    ) -> None:
        connection = burst.connection
        case = await case_store.case_by_invoice(
            connection, event.workspace_id, str(invoice.get("id") or "")
        )
        if case is None:
            return
        await case_store.add_case_event(
            connection, case, event.created_at, kind, "", event.event_id
        )
        if await case_store.close_case(connection, case, state, event.created_at) is not None:
            burst.on_commit.append(lambda: gateway_metrics.count_case_closed(state))

    async def _refunded(
        self, burst: Burst, event: inbox_store.StoredEvent, charge: Json, problems: list[str]
    ) -> None:
        customer_id = billing.expandable_id(charge.get("customer"))
        if not customer_id:
            return
        await self._notify(
            burst,
            event,
            customer_id,
            notifier_pb2.TEMPLATE_REFUND_CONFIRMATION,
            {
                "amount": billing.display_amount(
                    int(charge.get("amount_refunded") or 0), str(charge.get("currency") or "")
                ),
                "reference": str(charge.get("id") or ""),
            },
            dedup=f"refund-{event.event_id}",
            problems=problems,
        )

    # -- messages --------------------------------------------------------------------------

    async def _recipients_of(
        self, burst: Burst, workspace_id: str, customer_id: str
    ) -> list[notifier_pb2.Recipient]:
        """The customer's recipients, looked up once per burst (``recipients_cache_seconds``)
        and the customer's email read from the mirror while it is fresh."""
        key = (workspace_id, customer_id)
        now = self._monotonic()
        cached = self._recipients.get(key)
        if cached is not None and now - cached[0] < self._recipients_ttl:
            return cached[1]

        async def mirrored_email() -> str | None:
            return await mirror_reads.customer_email(
                burst.connection,
                workspace_id,
                customer_id,
                await self._freshness(burst, workspace_id),
                burst.now,
            )

        found = await self._notices.recipients(workspace_id, customer_id, mirrored_email)
        if self._recipients_ttl > 0:
            if len(self._recipients) >= _RECIPIENTS_CACHE_MAX:
                self._recipients.clear()
            self._recipients[key] = (now, found)
        return found

    async def _notify(
        self,
        burst: Burst,
        event: inbox_store.StoredEvent,
        customer_id: str,
        template: notifier_pb2.Template.ValueType,
        variables: dict[str, str],
        *,
        dedup: str,
        problems: list[str],
        recipients: list[notifier_pb2.Recipient] | None = None,
    ) -> None:
        """One message per recipient: ``recipients``, else the customer's linked contacts
        (see ``Notices``); what the notifier refuses for good is added to ``problems`` (the
        event's outcome) instead of retried forever."""
        if recipients is None:
            recipients = await self._recipients_of(burst, event.workspace_id, customer_id)
        refused = await self._notices.send(
            event.workspace_id,
            customer_id,
            template,
            variables,
            dedup=dedup,
            log_fields={"event_id": event.event_id, "event_type": event.event_type},
            recipients=recipients,
        )
        problems.extend(refused)
