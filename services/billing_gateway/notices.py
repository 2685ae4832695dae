"""Messages to a Stripe customer's people: who receives them (the contacts linked to the
customer, else the customer's email at Stripe). The confirmations of the gateway's own writes
go through ``confirmation_outbox``, which keeps them until the notifier takes them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from urllib.parse import quote

from askvault.billing.v1 import billing_pb2 as pb
from askvault.notifier.v1 import notifier_pb2
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import billing
from billing_gateway.peers import MessageRefused, Peers
from billing_gateway.stripe_api import StripeGateway, retrieve_json
from runtime import errors

logger = logging.getLogger(__name__)


def display_date(moment: datetime) -> str:
    """A date as a message shows it ("12 March 2026", UTC)."""
    return f"{moment.day} {moment:%B %Y}"


def plan_label(plan: pb.Plan) -> str:
    """A plan as a message names it: "Growth (49.00 USD / month)"."""
    name = plan.name or plan.tier or plan.price_id
    if plan.HasField("amount") and plan.interval:
        price = billing.display_amount(plan.amount.amount_minor, plan.amount.currency)
        return f"{name} ({price} / {plan.interval})"
    return name


class Notices:
    """Sends templated messages about one Stripe customer through the notifier."""

    def __init__(self, peers: Peers, accounts: AccountDirectory, gateway: StripeGateway) -> None:
        self._peers = peers
        self._accounts = accounts
        self._gateway = gateway

    async def recipients(
        self,
        workspace_id: str,
        customer_id: str,
        mirrored_email: Callable[[], Awaitable[str | None]] | None = None,
    ) -> list[notifier_pb2.Recipient]:
        """One recipient per linked contact (email from the contact, else from Stripe); the
        Stripe customer itself when no contact is linked yet. ``mirrored_email``: the
        customer's email as the mirror holds it (None when it may not answer: Stripe is
        asked)."""
        contacts = await self._peers.contacts_of(workspace_id, customer_id)
        stripe_email = ""
        if not contacts or any(not contact.email for contact in contacts):
            held = await mirrored_email() if mirrored_email is not None else None
            stripe_email = (
                held if held is not None else await self._email(workspace_id, customer_id)
            )
        recipients = [
            notifier_pb2.Recipient(
                contact_id=contact.contact_id, email=contact.email or stripe_email
            )
            for contact in contacts
        ]
        if recipients or not stripe_email:
            return recipients
        # No contact in identity yet (the customer never talked to the bot): the notifier
        # needs a contact id for consent and limits, so the Stripe customer stands in for one.
        return [
            notifier_pb2.Recipient(contact_id=f"stripe-customer-{customer_id}", email=stripe_email)
        ]

    async def customer_email(self, workspace_id: str, customer_id: str) -> str:
        """The customer's email at Stripe ('' when it has none or is gone)."""
        return await self._email(workspace_id, customer_id)

    async def _email(self, workspace_id: str, customer_id: str) -> str:
        """The customer's email at Stripe ('' when it has none or is gone)."""
        account = await self._accounts.account(workspace_id)
        try:
            customer = await retrieve_json(
                self._gateway,
                account,
                "customers.retrieve",
                f"/v1/customers/{quote(customer_id, safe='')}",
            )
        except errors.ServiceError as error:
            if error.kind is not errors.Kind.NOT_FOUND:
                raise
            return ""
        return str(customer.get("email") or "")

    async def send(
        self,
        workspace_id: str,
        customer_id: str,
        template: notifier_pb2.Template.ValueType,
        variables: dict[str, str],
        *,
        dedup: str,
        log_fields: Mapping[str, str] | None = None,
        recipients: list[notifier_pb2.Recipient] | None = None,
    ) -> list[str]:
        """Queues the message for every recipient (``recipients``, when the caller already
        knows them); returns what could not be sent for good (no recipient, a refusal by the
        notifier), logged with ``log_fields``. Passing failures raise ServiceError.

        Each message's dedup key is ``dedup`` plus its recipient: a repeat reaches the
        notifier's first message only with the same recipients. A caller whose outcome may be
        reported again after they changed (the Stripe customer standing in for a contact has
        become one) fixes them on the first report and passes them on every later one (the
        failed-payment message does: ``inbox_store.PaymentFailedNotice``)."""
        problems: list[str] = []
        if recipients is None:
            recipients = await self.recipients(workspace_id, customer_id)
        if not recipients:
            problems.append(f"no recipient for {customer_id}")
        for recipient in recipients:
            try:
                await self._peers.send(
                    notifier_pb2.SendRequest(
                        workspace_id=workspace_id,
                        recipient=recipient,
                        template=template,
                        variables=variables,
                        dedup_key=f"{dedup}-{recipient.contact_id or recipient.email}",
                    )
                )
            except MessageRefused as refused:
                # INVALID_ARGUMENT is our bug; FAILED_PRECONDITION (no consent, no address)
                # is the recipient's situation. Neither changes by trying again.
                log = logger.error if refused.is_bug else logger.warning
                log(
                    "notifier refused a message",
                    extra={
                        **(log_fields or {}),
                        "template": notifier_pb2.Template.Name(template),
                        "code": refused.code,
                        "reason": refused.reason,
                        "contact_id": recipient.contact_id,
                    },
                )
                problems.append(
                    f"notifier_refused {refused.code} {refused.reason} "
                    f"contact={recipient.contact_id}"
                )
        return problems
