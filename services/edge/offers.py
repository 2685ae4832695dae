"""What the visitor asked to be done, made into terms: which charge and how much to refund,
which plan to move to, which subscription to cancel or pause, which invoice to retry. The
terms then go to policy and are quoted (``quoting.ask_policy``)."""

from __future__ import annotations

import grpc

from askvault.billing.v1 import billing_pb2 as bpb
from edge import gateway, offer_replies, quoting, replies, views
from edge.domain import plan_choice
from edge.domain.intents import Parsed
from edge.domain.proposals import (
    CancelTerms,
    Money,
    PauseTerms,
    PlanChangeTerms,
    RefundTerms,
    ResubscribeTerms,
    ResumeTerms,
    RetryTerms,
)
from edge.peers import error_reason
from edge.turn import Context, NotFound, Reply, TurnDeps


async def duplicates(deps: TurnDeps, context: Context) -> Reply:
    """Finds a charge taken twice and offers to refund the later one."""
    answer = await gateway.call(
        deps.peers,
        "FindDuplicateCharges",
        bpb.FindDuplicateChargesRequest(
            workspace_id=context.workspace_id, identity_assertion=context.assertion
        ),
    )
    if not answer.pairs:
        return Reply(offer_replies.NO_DUPLICATE, data={"pairs": []})
    duplicate = answer.pairs[0].duplicate
    remaining = duplicate.amount.amount_minor - duplicate.amount_refunded.amount_minor
    return await _refund(
        deps,
        context,
        duplicate,
        remaining,
        offer_replies.duplicate_intro(context, duplicate),
        bpb.REFUND_REASON_DUPLICATE,
    )


async def refund(deps: TurnDeps, context: Context, parsed: Parsed) -> Reply:
    """Offers to refund the charge named (else the newest refundable one), in full or the
    amount asked."""
    charges = await gateway.charges(deps.peers, context)
    refundable = [c for c in charges if c.status == "succeeded" and not c.refunded]
    if parsed.charge_id:
        chosen = next((c for c in charges if c.charge_id == parsed.charge_id), None)
        if chosen is None:
            # Older than the newest page, or made moments ago (its webhook still on the way
            # to the mirror): asked for by id.
            try:
                chosen = await gateway.charge(deps.peers, context, parsed.charge_id)
            except NotFound:
                raise NotFound("that charge") from None
        if chosen.refunded:
            return Reply(offer_replies.ALREADY_REFUNDED_IN_FULL, status="denied")
    elif refundable:
        chosen = refundable[0]
    else:
        return Reply(offer_replies.NOTHING_TO_REFUND)
    currency = chosen.amount.currency
    remaining = chosen.amount.amount_minor - chosen.amount_refunded.amount_minor
    amount = remaining
    if parsed.amount is not None:
        if parsed.amount.currency and parsed.amount.currency != currency:
            return Reply(offer_replies.other_currency(currency, parsed.amount.currency))
        # Minor units of the charge's currency, known only now (¥50 is 50, $50 is 5,000).
        asked = parsed.amount.minor_units(currency)
        if asked is None:
            return Reply(offer_replies.finer_than_currency(currency))
        amount = asked
        if amount > remaining:
            return Reply(offer_replies.over_remaining(context, chosen, remaining), status="denied")
    return await _refund(
        deps,
        context,
        chosen,
        amount,
        offer_replies.charge_intro(context, chosen),
        bpb.REFUND_REASON_REQUESTED_BY_CUSTOMER,
    )


async def _refund(
    deps: TurnDeps,
    context: Context,
    charge: bpb.Charge,
    amount_minor: int,
    intro: str,
    reason: bpb.RefundReason.ValueType,
) -> Reply:
    amount = Money(amount_minor, charge.amount.currency)
    text, short = offer_replies.refund_offer(intro, amount.display)
    terms = RefundTerms(
        charge_id=charge.charge_id,
        amount=amount,
        charge_created_at=views.moment(charge.created_at),
        reason=int(reason),
        card=views.card_text(charge),
        short=short,
    )
    return await quoting.ask_policy(deps, context, terms, text)


async def change_plan(deps: TurnDeps, context: Context, parsed: Parsed, text: str = "") -> Reply:
    """Previews the move to the plan named (in the live catalog) and offers it."""
    answer = await gateway.subscription(deps.peers, context)
    if not answer.HasField("subscription"):
        return Reply(offer_replies.NO_SUBSCRIPTION_TO_CHANGE)
    sub = answer.subscription
    plans = offered_plans(
        await gateway.plans(deps.peers, context, sub.plan.amount.currency),
        sub.plan,
        context.self_serve_price_ids,
    )
    chosen = plan_choice.choose(
        parsed.plan, text, [plan_choice.PlanNames(p.name, p.tier, p.price_id) for p in plans]
    )
    step = plan_choice.step_named(text) if chosen is None else None
    if step is not None:
        chosen = plan_choice.step_from(step, _per_month(sub.plan), [_per_month(p) for p in plans])
        if chosen is None:
            return Reply(
                offer_replies.no_plan_that_way(step, sub.plan, plans),
                data={"plans": [views.plan_json(p) for p in plans]},
            )
    if chosen is None and not parsed.plan:
        return Reply(
            offer_replies.which_plan(plans), data={"plans": [views.plan_json(p) for p in plans]}
        )
    if chosen is None:
        return Reply(offer_replies.unknown_plan(parsed.plan, plans))
    target = plans[chosen]
    if target.price_id == sub.plan.price_id:
        return Reply(offer_replies.already_on(sub.plan))
    if not sub.plan_change_in_place:
        return await _resubscribe(deps, context, sub, target)
    try:
        preview = await gateway.call(
            deps.peers,
            "PreviewPlanChange",
            bpb.PreviewPlanChangeRequest(
                workspace_id=context.workspace_id,
                identity_assertion=context.assertion,
                subscription_id=sub.subscription_id,
                target_price_id=target.price_id,
            ),
        )
    except grpc.aio.AioRpcError as error:
        if error_reason(error) == "PLAN_CHANGE_REQUIRES_RESUBSCRIBE":
            return await _resubscribe(deps, context, sub, target)
        raise
    text, short = offer_replies.plan_change_offer(context, preview, target)
    terms = PlanChangeTerms(
        subscription_id=sub.subscription_id,
        target_price_id=target.price_id,
        target_name=target.name,
        old_name=sub.plan.name,
        features_gained=tuple(preview.features_gained),
        short=short,
    )
    return await quoting.ask_policy(deps, context, terms, text)


# Months in one billing interval, so that tiers billed yearly and monthly compare.
_MONTHS_PER_INTERVAL = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}


def _per_month(plan: bpb.Plan) -> float:
    months = _MONTHS_PER_INTERVAL.get(plan.interval, 1.0) * max(plan.interval_count, 1)
    return plan.amount.amount_minor / months


async def _resubscribe(
    deps: TurnDeps, context: Context, sub: bpb.Subscription, target: bpb.Plan
) -> Reply:
    """Offers the move by subscribing anew: a Checkout link for ``target`` (new mandate), the
    current plan ending at its period end once the new one is active."""
    text, short = offer_replies.resubscribe_offer(context, sub, target)
    terms = ResubscribeTerms(
        subscription_id=sub.subscription_id,
        target_price_id=target.price_id,
        target_name=target.name,
        old_name=sub.plan.name,
        short=short,
    )
    return await quoting.ask_policy(deps, context, terms, text)


def offered_plans(
    catalog: list[bpb.Plan], current: bpb.Plan, self_serve_price_ids: tuple[str, ...]
) -> list[bpb.Plan]:
    """The plans a customer on ``current`` may move to by themselves: the workspace's
    self-serve prices when it lists any (as Stripe's Customer Portal lists products), else the
    active recurring prices in the currency and interval of the current plan. Either way in the
    current plan's currency (a subscription keeps its currency), and the current plan itself
    (so that "Growth" while on Growth answers that it is the plan already)."""
    currency = current.amount.currency
    if self_serve_price_ids:
        listed = set(self_serve_price_ids)
        return [
            p
            for p in catalog
            if p.amount.currency == currency
            and (p.price_id in listed or p.price_id == current.price_id)
        ]
    return [
        p
        for p in catalog
        if p.amount.currency == currency
        and p.interval == current.interval
        and p.interval_count == current.interval_count
    ]


async def cancel(deps: TurnDeps, context: Context) -> Reply:
    """Offers to cancel the subscription (after a grace period the visitor can undo in)."""
    sub = await _active_subscription(deps, context)
    if sub is None:
        return Reply(offer_replies.NO_ACTIVE_SUBSCRIPTION)
    if sub.HasField("scheduled_cancellation") and sub.scheduled_cancellation.operation_id:
        return Reply(offer_replies.cancellation_already_scheduled(context, sub))
    text, short = offer_replies.cancel_offer(sub.plan.name)
    terms = CancelTerms(subscription_id=sub.subscription_id, plan=sub.plan.name, short=short)
    return await quoting.ask_policy(deps, context, terms, text)


async def pause(deps: TurnDeps, context: Context) -> Reply:
    """Offers to pause the subscription's payments."""
    sub = await _active_subscription(deps, context)
    if sub is None:
        return Reply(offer_replies.NO_ACTIVE_SUBSCRIPTION)
    text, short = offer_replies.pause_offer(sub.plan.name)
    terms = PauseTerms(subscription_id=sub.subscription_id, plan=sub.plan.name, short=short)
    return await quoting.ask_policy(deps, context, terms, text)


async def resume(deps: TurnDeps, context: Context) -> Reply:
    """Offers to resume a paused subscription's payments; any other is said not paused."""
    answer = await gateway.subscription(deps.peers, context)
    if not answer.HasField("subscription"):
        return Reply(replies.NO_SUBSCRIPTION, data={"subscription": None})
    sub = answer.subscription
    if not sub.paused or sub.status == bpb.SUBSCRIPTION_STATUS_CANCELED:
        return Reply(replies.NOT_PAUSED)
    text, short = offer_replies.resume_offer(sub.plan.name)
    terms = ResumeTerms(subscription_id=sub.subscription_id, plan=sub.plan.name, short=short)
    return await quoting.ask_policy(deps, context, terms, text)


async def _active_subscription(deps: TurnDeps, context: Context) -> bpb.Subscription | None:
    answer = await gateway.subscription(deps.peers, context)
    if (
        not answer.HasField("subscription")
        or answer.subscription.status == bpb.SUBSCRIPTION_STATUS_CANCELED
    ):
        return None
    return answer.subscription


async def retry(deps: TurnDeps, context: Context, invoice_id: str) -> Reply:
    """Offers to retry the payment of the invoice named, else of the unpaid latest one."""
    answer = await gateway.subscription(deps.peers, context)
    latest = answer.subscription.latest_invoice if answer.HasField("subscription") else None
    if not invoice_id:
        if latest is None or latest.status != "open":
            return Reply(offer_replies.NOTHING_TO_RETRY)
        invoice_id = latest.invoice_id
    amount = (
        views.money_text(latest.amount_due)
        if latest is not None and latest.invoice_id == invoice_id
        else ""
    )
    text, short = offer_replies.retry_offer(amount)
    terms = RetryTerms(invoice_id=invoice_id, amount_text=amount, short=short)
    return await quoting.ask_policy(deps, context, terms, text)
