"""Everything the bot says, and the notes it leaves for human agents: the one place to read
or change the wording. Constants and functions give the words; where buttons carry words
too, the function gives the whole ``Reply``. The other modules decide, this one words."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.policy.v1 import policy_pb2 as ppb
from edge import views
from edge.domain import formatting
from edge.domain.proposals import Quote
from edge.domain.whatsapp_proof import Outcome
from edge.turn import Action, Context, Reply

CAPABILITIES = (
    "I can help with your billing: your plan, renewal date and next bill; invoices (for "
    'example "invoices for the last 3 months"); a charge you think was taken twice; refunds; '
    "changing, pausing or canceling your plan; retrying a failed payment; updating your card; "
    "or getting you a human."
)
GREETING = "Hi! " + CAPABILITIES

# ----- the turn -----

STRIPE_DOWN = "I can't access billing right now; let me get someone to help."
STRIPE_DOWN_NOTE = "The billing gateway could not reach Stripe in time."
STRIPE_DOWN_LINKING_NOTE = "Stripe could not be reached to find the visitor's customer."
CARD_IN_MESSAGE = (
    "For your security I removed the card number from your message; please "
    "never type card details in chat. "
)
ONLY_THE_CUSTOMER_CONFIRMS = "Only the customer can confirm, in their own chat."
HUMAN_ASKED_NOTE = "The visitor asked for a human."
HUMAN_ASKED = "Of course. I've asked someone from our team to pick this up"


def no_billing_account(email: str) -> str:
    """The contact's email matched no Stripe customer."""
    return (
        f"I couldn't find a billing account under {email or 'your email'}, "
        "so I can't look that up. Want me to get a human?"
    )


def not_found(what: str) -> str:
    return f"I couldn't find {what} on your account."


# ----- hand-offs -----

SIGN_IN_FIRST = "I can help with billing once you're signed in to your account. " + CAPABILITIES
UNVERIFIED_NOTE = "The visitor's identity could not be verified; no billing data was shared."
UNVERIFIED_SUMMARY = "An unverified visitor asked about billing."


def _talk_to_a_human(escalation_id: str) -> Action:
    return Action("handoff", "Talk to a human", {"escalation_id": escalation_id})


def unverified_handoff(escalation_id: str) -> Reply:
    return Reply(
        "I can't discuss billing details until I can confirm who you are. I've asked "
        "someone from our team to help you."
        + (f" Your reference is {escalation_id}." if escalation_id else ""),
        actions=[_talk_to_a_human(escalation_id)],
        escalated=True,
        escalation_id=escalation_id,
        status="handoff",
    )


def handoff(text: str, escalation_id: str, email: str, status: str) -> Reply:
    """A hand-off's answer: ``text``, then (unless it ends a sentence) the reference and who
    will be answered."""
    reference = f" (reference {escalation_id})" if escalation_id else ""
    ending = "" if text.endswith(".") else f"{reference}. They'll reply to {email or 'you'} soon."
    return Reply(
        text + ending,
        actions=[_talk_to_a_human(escalation_id)],
        escalated=True,
        escalation_id=escalation_id,
        status=status,
    )


def transcript_author(author: str, verified: bool | None) -> str:
    # An agent must never read an unproven visitor's words as the customer's.
    if author == "visitor" and not verified:
        return "visitor (unverified)"
    return author


def subscription_summary(answer: bpb.GetSubscriptionResponse | None, customer: str) -> str:
    """The subscription as agents read it in a hand-off (None: the gateway did not answer)."""
    if answer is None:
        return "subscription unavailable"
    if not answer.HasField("subscription"):
        return "no subscription"
    sub = answer.subscription
    return (
        f"{sub.plan.name} ({views.money_text(sub.plan.amount)}/{sub.plan.interval}), "
        f"{views.status_word(sub.status)}, "
        f"subscription {sub.subscription_id}, customer {customer}"
    )


def _date(context: Context, stamp: timestamp_pb2.Timestamp) -> str:
    return views.date_text(context.zone, stamp)


def _short(context: Context, stamp: timestamp_pb2.Timestamp) -> str:
    return views.short_date_text(context.zone, context.now, stamp)


# ----- reads -----

NO_SUBSCRIPTION = "I don't see a subscription on your account. Want to see our plans?"


def status(context: Context, sub: bpb.Subscription, next_invoice: bool) -> Reply:
    """The subscription in words; ``next_invoice`` when the visitor asked what comes next."""
    money = views.money_text
    parts: list[str] = []
    actions: list[Action] = []
    state = sub.status
    if state == bpb.SUBSCRIPTION_STATUS_TRIALING and sub.HasField("trial_end"):
        parts.append(
            f"You're on a trial of the {views.plan_text(sub.plan)} until "
            f"{_date(context, sub.trial_end)}."
        )
    elif state == bpb.SUBSCRIPTION_STATUS_CANCELED:
        parts.append(f"Your {sub.plan.name} subscription has ended.")
    else:
        parts.append(f"You're on the {views.plan_text(sub.plan)}.")
    if sub.paused:
        parts.append("Payments are paused.")
    if sub.HasField("scheduled_cancellation") and sub.scheduled_cancellation.operation_id:
        parts.append(
            "Your cancellation is scheduled for "
            f"{_date(context, sub.scheduled_cancellation.run_at)}; "
            'say "undo" to keep your plan.'
        )
    elif sub.cancel_at_period_end and sub.HasField("current_period_end"):
        parts.append(f"It ends on {_date(context, sub.current_period_end)}.")
    elif state != bpb.SUBSCRIPTION_STATUS_CANCELED and sub.HasField("current_period_end"):
        next_amount = (
            f" ({money(sub.next_invoice_amount)})"
            if sub.HasField("next_invoice_amount") and next_invoice
            else ""
        )
        parts.append(f"Next billing date: {_date(context, sub.current_period_end)}{next_amount}.")
        if next_invoice and not next_amount:
            parts.append(f"Your next invoice should be {money(sub.plan.amount)}.")
    latest = sub.latest_invoice
    if latest.invoice_id:
        if latest.status == "paid":
            parts.append(
                f"Last invoice ({_short(context, latest.created_at)}): "
                f"{money(latest.amount_paid)} paid."
            )
        elif latest.status == "open":
            parts.append(
                f"Your last invoice ({_short(context, latest.created_at)}) of "
                f"{money(latest.amount_due)} is unpaid."
            )
            actions += [
                Action("confirm", "Retry payment", {"text": "retry now"}),
                Action("confirm", "Update card", {"text": "update my card"}),
            ]
    if state == bpb.SUBSCRIPTION_STATUS_PAST_DUE:
        parts.append("Want me to retry the payment now, or send you a link to update your card?")
    else:
        parts.append("Want to see your invoice history or change plans?")
    return Reply(" ".join(parts), actions=actions)


def no_invoices(period_label: str) -> str:
    return f"I found no invoices for {period_label}."


def bundle_summary(period_label: str) -> str:
    """The quote of an invoice bundle."""
    return f"email your invoices for {period_label}"


def invoices(
    context: Context, period_label: str, found: list[bpb.InvoiceSummary], quote: Quote
) -> Reply:
    """The invoices with their links, and the button to email them as ``quote`` says."""
    lines = [f"Here are your invoices for {period_label}:"]
    actions = []
    for invoice in found:
        paid = invoice.status == "paid"
        amount = views.money_text(invoice.amount_paid if paid else invoice.amount_due)
        link = invoice.invoice_pdf_url or invoice.hosted_invoice_url
        lines.append(f"- {_date(context, invoice.created_at)}: {amount} {invoice.status} ({link})")
        actions.append(
            Action(
                "link",
                f"Invoice {_short(context, invoice.created_at)}",
                {"url": link},
            )
        )
    lines.append("Want me to email them to you as one bundle?")
    answer = {"text": "yes", "quote_id": quote.quote_id, "terms_hash": quote.terms_hash}
    actions.append(Action("confirm", "Email them to me", answer))
    return Reply("\n".join(lines), actions=actions)


def no_invoices_to_email(period_label: str) -> str:
    return f"I found no invoices for {period_label} to email."


NO_EMAIL_ADDRESS = (
    "I have no verified email address to send your invoices to; the links above work meanwhile."
)
BUNDLE_NOT_SENT = "I couldn't send the email just now; the links above work meanwhile."


def bundle_sent(period_label: str, recipient: str) -> str:
    return f"Done: I've emailed your invoices for {period_label} to {recipient}."


def plans(found: list[bpb.Plan], current_price_id: str) -> str:
    described = [
        f"{plan.name} {views.money_text(plan.amount)}"
        f"{formatting.interval(plan.interval, plan.interval_count)}"
        + (" (yours)" if plan.price_id == current_price_id else "")
        for plan in found
    ]
    return f"Our plans: {formatting.listing(described)}. Want to switch?"


ALREADY_CANCELED = (
    "Your subscription was already canceled, so there's nothing to undo. You "
    "can subscribe again any time."
)
NO_CANCELLATION = "There's no cancellation to undo; your plan continues as it is."
TOO_LATE_TO_UNDO = (
    "Too late to undo: the grace period had ended and the subscription is canceled. "
    "You can subscribe again any time."
)


def undone(plan_name: str) -> str:
    return f"Done: your cancellation is undone and your {plan_name} plan continues."


def card_link(url: str | None) -> Reply:
    """The card-update link (None: the gateway made none)."""
    if url is None:
        return Reply("I couldn't create a card-update link just now. Want me to get a human?")
    return Reply(
        f"Here's a secure link to update your card: {url}",
        actions=[Action("link", "Update card", {"url": url})],
        data={"url": url},
    )


# ----- offers (what a money action would do, before policy and the person) -----
# An offer gives the quote's sentence and the action's short name ("refund $49"), which
# names the action when policy refuses it.

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


def already_on(plan: bpb.Plan) -> str:
    return f"You're already on the {views.plan_text(plan)}."


def emandate_cannot_change(target_name: str) -> str:
    return (
        "Your subscription is paid by UPI under an Indian eMandate, which can't be "
        f"changed in place. To move to {target_name}, cancel your current plan and "
        f"subscribe to {target_name} again; the new mandate is set up when you "
        "subscribe. Want me to cancel the current plan?"
    )


def resubscribe_to(target_name: str) -> str:
    return (
        f"Your payment method can't be changed in place; to move to {target_name}, "
        "cancel and subscribe again."
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
    if preview.features_gained:
        text += f" You'd unlock {formatting.listing(list(preview.features_gained))}."
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


NOTHING_TO_RETRY = "You don't have an unpaid invoice; nothing to retry."


def retry_offer(amount: str) -> tuple[str, str]:
    return (
        f"I can retry the payment of your unpaid invoice{f' ({amount})' if amount else ''}.",
        "retry the payment",
    )


# ----- quotes, confirmations and policy's refusals -----

OFFER_EXPIRED = "That offer expired, so I haven't done anything. Ask me again and I'll set it up."
NOTHING_PENDING = "There's nothing waiting for your confirmation right now. " + CAPABILITIES
DECLINED = "OK, I won't do that. Anything else I can help with?"
NOTHING_TO_DECLINE = "OK. Anything else I can help with?"


def asked_note(short: str) -> str:
    return f"The visitor asked to {short}."


def confirmed_note(summary: str) -> str:
    return f"The visitor confirmed: {summary}"


def confirmation(quote: Quote, conversation_id: str) -> Reply:
    # The buttons are the chat UI's: "text" for a typed answer, or the quote for
    # POST /v1/confirmations with the visitor's own proof.
    answer = {"quote_id": quote.quote_id, "terms_hash": quote.terms_hash}
    return Reply(
        f"{quote.summary} Shall I go ahead?",
        actions=[
            Action("confirm", "Yes, go ahead", {"text": "yes", **answer}),
            Action("cancel", "No", {"text": "no", **answer}),
        ],
        data={"quote": quote.as_json(), "conversation_id": conversation_id},
        status="needs_confirmation",
    )


def escalated_note(short: str) -> str:
    return f"Policy escalated: {short}."


def escalated(short: str, because: str) -> str:
    return f"I can't {short} on my own ({because}). I've passed it to our team with the details"


def denied(short: str, because: str) -> str:
    return f"I can't {short}: {because}."


def reason_text(decision: ppb.AuthorizeResponse, context: Context) -> str:
    """A decision's reason in words, with its numbers."""
    money = views.money_text
    reason = decision.reason
    usage = decision.usage
    resets = (
        f"; the next is possible on {formatting.date(views.moment(usage.resets_at), context.zone)}"
        if usage.HasField("resets_at")
        else ""
    )
    # The bound reached may be the Stripe customer's, shared by everyone on the account.
    shared = usage.scope == ppb.COUNTER_SCOPE_CUSTOMER
    if reason == ppb.DECISION_REASON_PLAN_CHANGE_LIMIT:
        who = "your billing account has" if shared else "you've"
        return (
            f"{who} used {usage.used_count} of {usage.limit_count} plan changes this month{resets}"
        )
    if reason == ppb.DECISION_REASON_REFUND_OVER_CAP:
        if usage.HasField("limit_amount"):
            scope = " for your billing account" if shared else ""
            return (
                f"automatic refunds are limited to {money(usage.limit_amount)} per period"
                f"{scope} and {money(usage.remaining_amount)} is left{resets}"
            )
        return "it is over the automatic refund limit"
    if reason == ppb.DECISION_REASON_REFUND_OUTSIDE_WINDOW:
        days = decision.refund_window.seconds // 86_400 if decision.HasField("refund_window") else 0
        return (
            f"the charge is older than the {days}-day refund window"
            if days
            else "the charge is outside the refund window"
        )
    return _REASONS.get(reason, "it isn't allowed")


_NOT_YOU = "I couldn't confirm who you are"
_REASONS: dict[int, str] = {
    ppb.DECISION_REASON_CONFIRMATION_INVALID: (
        "your confirmation didn't match what I offered, so nothing changed; ask me again"
    ),
    ppb.DECISION_REASON_CURRENCY_NOT_COVERED: "automatic refunds aren't set up for that currency",
    ppb.DECISION_REASON_CUSTOMER_NOT_LINKED: "your account isn't linked to a billing profile yet",
    ppb.DECISION_REASON_SKILL_NOT_ENABLED: "billing actions aren't enabled for this workspace",
    ppb.DECISION_REASON_IDENTITY_REQUIRED: _NOT_YOU,
    ppb.DECISION_REASON_ASSERTION_INVALID: _NOT_YOU,
    ppb.DECISION_REASON_ASSERTION_EXPIRED: _NOT_YOU,
    ppb.DECISION_REASON_WORKSPACE_MISMATCH: _NOT_YOU,
    ppb.DECISION_REASON_INVALID_DETAILS: "the request isn't valid",
}


# ----- what came of a money action -----


def refunded(refund: bpb.RefundChargeResponse, card: str) -> str:
    to_card = f" to your {card}" if card else ""
    return (
        f"Done: I've refunded {views.money_text(refund.amount)}{to_card} "
        f"(reference {refund.refund_id}). It usually shows up within 5 to 10 business days."
    )


def plan_changed(context: Context, sub: bpb.Subscription, features: list[str]) -> str:
    text = f"Done: you're now on the {views.plan_text(sub.plan)}, effective today."
    if sub.HasField("current_period_end"):
        text += (
            " The prorated difference is on your next invoice on "
            f"{_date(context, sub.current_period_end)}."
        )
    if features:
        text += f" You now have {formatting.listing(features)}."
    return text


def cancellation_scheduled(
    context: Context, plan_name: str, operation_id: str, run_at: datetime
) -> Reply:
    local = run_at.astimezone(ZoneInfo(context.zone))
    return Reply(
        f"Your {plan_name} subscription will be canceled at {local:%H:%M} on "
        f"{formatting.date(run_at, context.zone)}. "
        'Changed your mind? Just say "undo" before then.',
        actions=[Action("cancel", "Undo", {"text": "undo"})],
        data={"operation_id": operation_id, "run_at": run_at.isoformat()},
    )


def paused(plan_name: str) -> str:
    return f"Done: payments on your {plan_name} subscription are paused."


def payment_went_through(invoice: bpb.InvoiceSummary) -> str:
    return f"The payment of {views.money_text(invoice.amount_paid)} went through; you're all set."


def declined_again(card_link: Reply) -> Reply:
    """The card was declined (again), with the card-update link's answer after it."""
    return Reply(
        "The payment was declined again. " + card_link.text,
        actions=card_link.actions,
        status="denied",
    )


ALREADY_REFUNDED = "That charge was already refunded."
CANNOT_CHANGE_IN_PLACE = (
    "Your payment method can't be changed in place; cancel and subscribe again to switch."
)
BILLING_REFUSED = "Billing refused that request, so nothing changed. Want me to get a human?"

# ----- WhatsApp -----

NO_WHATSAPP_HERE = "I can't set up WhatsApp messages from here, sorry."
TOO_MANY_LINK_CODES = (
    "You've asked for several WhatsApp link codes in the last hour; please try again later."
)


def whatsapp_already_linked(number: str) -> str:
    return f"WhatsApp {number} is already linked to your account; billing messages come there."


def send_link_code(number: str, business: str, code: str, minutes: int) -> str:
    return (
        f"To link WhatsApp {number} to your account, send this message from that WhatsApp "
        f"number to {'our WhatsApp number ' + business if business else 'our WhatsApp number'}"
        f": LINK {code} (the code works for {minutes} minutes). Until then, "
        "nothing about your account goes to that number."
    )


OPEN_WHATSAPP = "Open WhatsApp"
# Answered on WhatsApp to a "LINK <code>" message.
WHATSAPP_LINK_OUTCOMES = {
    Outcome.LINKED: (
        "Done: this WhatsApp number is now linked to your account, and billing messages will "
        "come here. Reply here any time for billing help."
    ),
    Outcome.WRONG_CODE: (
        "That code doesn't match. Check the code shown in the chat and send LINK followed by it."
    ),
    Outcome.VOID: (
        "Too many wrong codes: that link code no longer works. Ask in the chat for a new one."
    ),
    Outcome.NO_CHALLENGE: (
        "There's no link waiting for this number, or its code has expired. Ask in the chat "
        "for a new code."
    ),
}
