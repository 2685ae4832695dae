"""What a money action would do, in words, before policy and the person decide: each offer
gives the quote's sentence and the action's short name ("refund $49"), which names the
action when policy refuses it; and what stops an offer being made."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as bpb
from edge import views
from edge.domain import formatting, plan_choice
from edge.turn import Context


def _date(context: Context, stamp: timestamp_pb2.Timestamp) -> str:
    return views.date_text(context.zone, stamp)


NO_DUPLICATE = (
    "I checked your recent charges and don't see one taken twice. If a charge "
    "looks wrong, tell me which one and I'll look into it."
)
ALREADY_REFUNDED_IN_FULL = "That charge was already refunded in full."
NOTHING_TO_REFUND = "I don't see a charge on your account that could be refunded."


def duplicate_intro(context: Context, duplicate: bpb.Charge) -> str:
    return (
        f"You were charged {views.money_text(duplicate.amount)} twice on "
        f"{_date(context, duplicate.created_at)}; the second charge is a duplicate."
    )


def other_currency(charge_currency: str, asked_currency: str) -> str:
    return (
        f"That charge was in {charge_currency.upper()}, so I can't refund it "
        f"in {asked_currency.upper()}."
    )


def finer_than_currency(currency: str) -> str:
    return (
        f"That amount is finer than the smallest unit of {currency.upper()} "
        f"({formatting.money(1, currency)})."
    )


def over_remaining(context: Context, charge: bpb.Charge, remaining: int) -> str:
    return (
        f"The charge on {_date(context, charge.created_at)} was "
        f"{views.money_text(charge.amount)}; I can refund at most "
        f"{formatting.money(remaining, charge.amount.currency)} of it."
    )


def charge_intro(context: Context, charge: bpb.Charge) -> str:
    card = views.card_text(charge)
    return (
        f"Your charge on {_date(context, charge.created_at)} was "
        f"{views.money_text(charge.amount)}" + (f" ({card})" if card else "") + "."
    )


def refund_offer(intro: str, amount: str) -> tuple[str, str]:
    return f"{intro} I can refund {amount} to your original payment method.", f"refund {amount}"


NO_SUBSCRIPTION_TO_CHANGE = "You don't have a subscription to change. Want to see our plans?"


def which_plan(found: list[bpb.Plan]) -> str:
    return f"Which plan would you like: {formatting.listing([p.name for p in found])}?"


def unknown_plan(asked: str, found: list[bpb.Plan]) -> str:
    names = formatting.listing([p.name for p in found])
    return f"I don't know a plan called {asked.title()}. Our plans are {names}."


def no_plan_that_way(step: plan_choice.Step, current: bpb.Plan, found: list[bpb.Plan]) -> str:
    way = {
        plan_choice.Step.DOWN: "cheaper than",
        plan_choice.Step.CHEAPEST: "cheaper than",
        plan_choice.Step.UP: "above",
        plan_choice.Step.DEAREST: "above",
    }[step]
    names = formatting.listing([p.name for p in found])
    return f"There's no plan {way} your {views.plan_text(current)}. Our plans are {names}."


def already_on(plan: bpb.Plan) -> str:
    return f"You're already on the {views.plan_text(plan)}."


def resubscribe_offer(
    context: Context, current: bpb.Subscription, target: bpb.Plan
) -> tuple[str, str]:
    """A UPI or eMandate subscription moves by subscribing anew: the offer says so and what
    would happen (the current plan ends at its period end, once the new one is active)."""
    ends = (
        f" at the end of its period ({_date(context, current.current_period_end)})"
        if current.HasField("current_period_end")
        else " at the end of its period"
    )
    return (
        "Your subscription is paid by UPI under an Indian eMandate, which can't be changed in "
        f"place: to move to {target.name}, you subscribe to {target.name} again and the new "
        "mandate is set up when you subscribe. Want me to cancel the current plan? I'd send you "
        f"a Stripe Checkout link for the {views.plan_text(target)}, and your "
        f"{current.plan.name} plan would end{ends}, only once {target.name} is active.",
        f"move to {target.name}",
    )


def plan_change_offer(
    context: Context, preview: bpb.PreviewPlanChangeResponse, target: bpb.Plan
) -> tuple[str, str]:
    difference = preview.price_difference
    more_or_less = "more" if difference.amount_minor >= 0 else "less"
    diff_text = formatting.money(abs(difference.amount_minor), difference.currency)
    per = formatting.interval(target.interval, target.interval_count).lstrip("/")
    text = (
        f"Moving from {views.plan_text(preview.current_plan)} to the "
        f"{views.plan_text(preview.target_plan)} costs {diff_text} {more_or_less} per {per}. "
        f"It takes effect right away ({_date(context, preview.effective_at)})"
    )
    if preview.HasField("proration_amount") and preview.proration_amount.amount_minor:
        proration = preview.proration_amount
        verb = "added to" if proration.amount_minor > 0 else "credited on"
        text += (
            f"; a prorated {formatting.money(abs(proration.amount_minor), proration.currency)}"
            f" is {verb} your next invoice on {_date(context, preview.next_invoice_at)}"
        )
    text += "."
    # Each plan lists its own lines ("Up to 3 seats", "Up to 10 seats"): a cheaper plan's are
    # no gain to speak of, nor a dearer plan's a loss.
    if preview.features_gained and difference.amount_minor >= 0:
        text += f" You'd unlock {formatting.listing(list(preview.features_gained))}."
    if preview.features_lost and difference.amount_minor <= 0:
        # Said before the "yes": a downgrade takes these away at once.
        text += (
            f" You'd lose {formatting.listing(list(preview.features_lost))}"
            f" ({preview.current_plan.name} features the {target.name} plan doesn't have)."
        )
    return text, f"change to {target.name}"


NO_ACTIVE_SUBSCRIPTION = "You don't have an active subscription."


def cancellation_already_scheduled(context: Context, sub: bpb.Subscription) -> str:
    return (
        "Your cancellation is already scheduled for "
        f"{_date(context, sub.scheduled_cancellation.run_at)}."
    )


def cancel_offer(plan_name: str) -> tuple[str, str]:
    return (
        f"I can cancel your {plan_name} subscription. You'll have a short grace "
        'period to change your mind (just say "undo").',
        "cancel your subscription",
    )


def pause_offer(plan_name: str) -> tuple[str, str]:
    return (
        f"I can pause payments on your {plan_name} subscription until you resume.",
        "pause your subscription",
    )


def resume_offer(plan_name: str) -> tuple[str, str]:
    return (
        f"Your {plan_name} subscription is paused. I can resume it: payments start again "
        "from the next billing date.",
        "resume your subscription",
    )


NOTHING_TO_RETRY = "You don't have an unpaid invoice; nothing to retry."


def retry_offer(amount: str) -> tuple[str, str]:
    return (
        f"I can retry the payment of your unpaid invoice{f' ({amount})' if amount else ''}.",
        "retry the payment",
    )
