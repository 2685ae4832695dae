"""The subscription line of a hand-off: the turn's own read, else the contact's tags."""

from __future__ import annotations

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2 as ipb
from edge import agent_notes


def _contact(tier: int = 0, status: int = 0, customer: str = "cus_1") -> ipb.Contact:
    return ipb.Contact(
        stripe_customer_id=customer,
        tags=ipb.ContactTags(plan_tier=tier, customer_status=status),  # type: ignore[arg-type]
    )


def test_without_a_read_the_summary_comes_from_the_tags() -> None:
    tagged = _contact(ipb.PLAN_TIER_GROWTH, ipb.CUSTOMER_STATUS_PAST_DUE)
    assert agent_notes.subscription_summary(None, tagged) == (
        "Growth tier, past_due (the contact's tags), customer cus_1"
    )
    assert agent_notes.subscription_summary(None, _contact()) == (
        "plan unknown (the contact's tags), customer cus_1"
    )
    assert agent_notes.subscription_summary(None, _contact(customer="")) == (
        "no Stripe customer linked"
    )


def test_the_turns_own_read_wins_over_the_tags() -> None:
    answer = bpb.GetSubscriptionResponse(
        subscription=bpb.Subscription(
            subscription_id="sub_1",
            status=bpb.SUBSCRIPTION_STATUS_ACTIVE,
            plan=bpb.Plan(
                name="Basalt",
                interval="month",
                amount=common_pb2.Money(amount_minor=9900, currency="usd"),
            ),
        )
    )
    summary = agent_notes.subscription_summary(answer, _contact(ipb.PLAN_TIER_GROWTH))
    assert summary == "Basalt ($99/month), active, subscription sub_1, customer cus_1"
    none = agent_notes.subscription_summary(bpb.GetSubscriptionResponse(), _contact())
    assert none == "no subscription, customer cus_1"
