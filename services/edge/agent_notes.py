"""The notes the bot leaves for human agents: what an escalation says happened, how the
transcript names who spoke, and the subscription as an agent reads it. The visitor never
sees these words (``replies`` has theirs)."""

from __future__ import annotations

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.identity.v1 import identity_pb2 as ipb
from edge import views

STRIPE_DOWN_NOTE = "The billing gateway could not reach Stripe in time."
STRIPE_DOWN_LINKING_NOTE = "Stripe could not be reached to find the visitor's customer."
HUMAN_ASKED_NOTE = "The visitor asked for a human."
UNVERIFIED_NOTE = "The visitor's identity could not be verified; no billing data was shared."
UNVERIFIED_SUMMARY = "An unverified visitor asked about billing."


def transcript_author(author: str, verified: bool | None) -> str:
    # An agent must never read an unproven visitor's words as the customer's.
    if author == "visitor" and not verified:
        return "visitor (unverified)"
    return author


def subscription_summary(answer: bpb.GetSubscriptionResponse | None, contact: ipb.Contact) -> str:
    """The subscription as agents read it in a hand-off: the gateway's answer when the turn
    read one, else the contact's audience tags (kept from Stripe's webhooks)."""
    customer = contact.stripe_customer_id
    if answer is None:
        return _from_tags(contact.tags, customer)
    if not answer.HasField("subscription"):
        return f"no subscription, customer {customer}" if customer else "no subscription"
    sub = answer.subscription
    return (
        f"{sub.plan.name} ({views.money_text(sub.plan.amount)}/{sub.plan.interval}), "
        f"{views.status_word(sub.status)}, "
        f"subscription {sub.subscription_id}, customer {customer}"
    )


def _from_tags(tags: ipb.ContactTags, customer: str) -> str:
    if not customer:
        return "no Stripe customer linked"
    tier = ipb.PlanTier.Name(tags.plan_tier).removeprefix("PLAN_TIER_").capitalize()
    status = ipb.CustomerStatus.Name(tags.customer_status).removeprefix("CUSTOMER_STATUS_")
    known = [
        f"{tier} tier" if tags.plan_tier else "",
        status.lower() if tags.customer_status else "",
    ]
    said = ", ".join(part for part in known if part) or "plan unknown"
    return f"{said} (the contact's tags), customer {customer}"


def asked_note(short: str) -> str:
    return f"The visitor asked to {short}."


def confirmed_note(summary: str) -> str:
    return f"The visitor confirmed: {summary}"


def escalated_note(short: str) -> str:
    return f"Policy escalated: {short}."
