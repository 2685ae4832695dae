"""The values policy's rules talk about."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Action(enum.StrEnum):
    """A billing action (askvault.common.v1.BillingAction without the prefix, lower case)."""

    REFUND = "refund"
    CHANGE_PLAN = "change_plan"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    PAUSE_SUBSCRIPTION = "pause_subscription"
    RESUME_SUBSCRIPTION = "resume_subscription"
    RETRY_PAYMENT = "retry_payment"
    START_RESUBSCRIPTION = "start_resubscription"


# The actions that move a subscription to another price (``Details.target_price_id``): both
# are limited to the workspace's self-serve prices.
PRICE_MOVES = frozenset({Action.CHANGE_PLAN, Action.START_RESUBSCRIPTION})


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units of a lower-case ISO currency."""

    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Details:
    """The parameters of an action; a grant binds exactly these."""

    stripe_customer_id: str = ""
    charge_id: str = ""
    subscription_id: str = ""
    invoice_id: str = ""
    amount: Money | None = None
    charge_created_at: datetime | None = None
    target_price_id: str = ""

    def binding(self) -> tuple[str, str, str, str, int, str, str]:
        """What a redemption must match exactly (the charge's creation time is checked
        apart, to the second, in ``grants.check_redeem``)."""
        amount = self.amount or Money(0, "")
        return (
            self.stripe_customer_id,
            self.charge_id,
            self.subscription_id,
            self.invoice_id,
            amount.amount_minor,
            amount.currency,
            self.target_price_id,
        )


class Channel(enum.StrEnum):
    """How the person said yes (askvault.policy.v1.ConfirmationChannel, lower case)."""

    CHAT_TURN = "chat_turn"
    CONFIRM_ENDPOINT = "confirm_endpoint"
    MCP_ELICITATION = "mcp_elicitation"
    WHATSAPP_REPLY = "whatsapp_reply"


@dataclass(frozen=True)
class Confirmation:
    """A person's yes to a quote, as presented with a request; checked, never trusted."""

    quote_id: str
    summary: str
    terms_hash: str
    expires_at: datetime | None
    channel: Channel | None
    confirmed_at: datetime | None = None
