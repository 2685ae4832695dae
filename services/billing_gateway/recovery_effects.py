"""What Stripe's invoice and charge events do for failed-payment recovery: a failed payment
opens the invoice's recovery case and tells the customer once (the link from the invoice as
Stripe holds it, never from the payload); a paid, voided or uncollectible invoice closes the
case; a refunded charge confirms the refund to the customer."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg

from askvault.notifier.v1 import notifier_pb2
from billing_gateway import case_store, convert, gateway_metrics, inbox_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import billing
from billing_gateway.event_burst import Burst, EventMessages
from billing_gateway.stripe_api import StripeGateway, retrieve_json
from runtime import errors, ids

Json = dict[str, Any]

# Seconds a batch waits for a second pool connection to commit a failed-payment message's
# decision before it defers the event (a pool held entirely by batches waiting for one more
# would otherwise wait forever).
_DECISION_CONNECTION_WAIT_SECONDS = 5.0


class RecoveryEffects:
    """Recovery cases and the messages of failed payments and refunds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        accounts: AccountDirectory,
        messages: EventMessages,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._accounts = accounts
        self._messages = messages

    async def payment_failed(
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
            await self._messages.notify(
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
        recipients = await self._messages.recipients_of(burst, workspace_id, customer_id)
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

    async def close_case(
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

    async def refunded(
        self, burst: Burst, event: inbox_store.StoredEvent, charge: Json, problems: list[str]
    ) -> None:
        customer_id = billing.expandable_id(charge.get("customer"))
        if not customer_id:
            return
        await self._messages.notify(
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
