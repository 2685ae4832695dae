"""What the bot says to the visitor in a turn: greetings, hand-offs, read answers,
confirmations and what came of an action. Constants and functions give the words; where
buttons carry words too, the function gives the whole ``Reply``. The other modules decide,
these word.

The rest of the wording sits beside this module, one responsibility each: ``offer_replies``
(what a money action would do, before anyone decides), ``refusals`` (policy's refusals in
words), ``agent_notes`` (what human agents read, never the visitor) and
``whatsapp_replies`` (linking a WhatsApp number)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2 as bpb
from edge import views
from edge.domain import formatting
from edge.domain.intents import Intent
from edge.domain.proposals import Quote
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
CARD_IN_MESSAGE = (
    "For your security I removed the card number from your message; please "
    "never type card details in chat. "
)
ONLY_THE_CUSTOMER_CONFIRMS = "Only the customer can confirm, in their own chat."
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


NO_FAILED_PAYMENT = "I don't see a failed payment on your account: your last invoice isn't unpaid."


def payment_failed(context: Context, invoice: bpb.InvoiceSummary) -> Reply:
    """The unpaid invoice, and the three ways on: retry, a new card, or a person."""
    return Reply(
        f"Your last invoice ({_short(context, invoice.created_at)}) of "
        f"{views.money_text(invoice.amount_due)} is unpaid. I can retry the payment now, send "
        "you a secure link to update your card, or get you someone from our team.",
        actions=[
            Action("confirm", "Retry payment", {"text": "retry now"}),
            Action("confirm", "Update card", {"text": "update my card"}),
            Action("confirm", "Talk to a human", {"text": "talk to a human"}),
        ],
    )


NOT_PAUSED = "Your subscription isn't paused, so there's nothing to resume."

# When a message asks for two things: what each is called and what its button sends
# (a message read back as that one).
_CHOICES: dict[Intent, tuple[str, str]] = {
    Intent.REFUND: ("get a refund", "refund my last charge"),
    Intent.DUPLICATE_CHARGE: ("look into a charge taken twice", "I was charged twice"),
    Intent.CANCEL: ("cancel your subscription", "cancel my subscription"),
    Intent.UNDO: ("undo your cancellation", "undo the cancellation"),
    Intent.PAUSE: ("pause your subscription", "pause my subscription"),
    Intent.RESUME: ("resume your subscription", "resume my subscription"),
    Intent.CHANGE_PLAN: ("change your plan", "change my plan"),
    Intent.PAYMENT_FAILED: ("sort out a failed payment", "my payment failed"),
    Intent.RETRY_PAYMENT: ("retry a payment", "retry my payment"),
    Intent.UPDATE_CARD: ("update your card", "update my card"),
    Intent.EMAIL_INVOICES: ("email your invoices", "email me my invoices"),
}


def clarify(alternatives: tuple[Intent, ...]) -> Reply:
    """Asks which of two things the visitor meant, a button for each."""
    choices = [_CHOICES[intent] for intent in alternatives if intent in _CHOICES][:2]
    if len(choices) < 2:
        return Reply(CAPABILITIES)
    (first, _), (second, _) = choices
    return Reply(
        f"Just to be sure: do you want to {first}, or to {second}?",
        actions=[Action("confirm", name.capitalize(), {"text": text}) for name, text in choices],
    )


def no_invoices(period_label: str) -> str:
    return f"I found no invoices for {period_label}."


def bundle_summary(period_label: str) -> str:
    """The quote of an invoice bundle."""
    return f"email your invoices for {period_label}"


def invoices(
    context: Context, period_label: str, found: list[bpb.InvoiceSummary], quote: Quote
) -> Reply:
    """The invoices with their links, and the button to email them as ``quote`` says."""
    lines = [
        f"Here is your invoice for {period_label}:"
        if len(found) == 1
        else f"Here are your invoices for {period_label}:"
    ]
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
    lines.append(
        "Want me to email it to you?"
        if len(found) == 1
        else "Want me to email them to you as one bundle?"
    )
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


# ----- quotes, confirmations and policy's refusals -----

OFFER_EXPIRED = "That offer expired, so I haven't done anything. Ask me again and I'll set it up."
NOTHING_PENDING = "There's nothing waiting for your confirmation right now. " + CAPABILITIES
DECLINED = "OK, I won't do that. Anything else I can help with?"
NOTHING_TO_DECLINE = "OK. Anything else I can help with?"


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


def resubscribe_link(
    context: Context, old_name: str, target_name: str, started: bpb.StartResubscriptionResponse
) -> Reply:
    """The Checkout link for the new plan; the old one ends only once the new one is active."""
    ends = (
        f" on {_date(context, started.current_period_end)}"
        if started.HasField("current_period_end")
        else ""
    )
    until = (
        f" The link works until {_date(context, started.expires_at)}."
        if started.HasField("expires_at")
        else ""
    )
    return Reply(
        f"Here's your secure Stripe Checkout link to subscribe to {target_name} and approve "
        f"its new mandate: {started.checkout_url}.{until} Your {old_name} plan stays as it is "
        f"until {target_name} is active; then it ends at the end of its period{ends}, so "
        "you're never without a plan or billed twice for the same days.",
        actions=[Action("link", f"Subscribe to {target_name}", {"url": started.checkout_url})],
        data={
            "checkout_url": started.checkout_url,
            "checkout_session_id": started.checkout_session_id,
            "operation_id": started.operation.operation_id,
        },
    )


def paused(plan_name: str) -> str:
    return f"Done: payments on your {plan_name} subscription are paused."


def resumed(context: Context, plan_name: str, sub: bpb.Subscription) -> str:
    text = f"Done: payments on your {plan_name} subscription are back on."
    if sub.HasField("current_period_end"):
        text += f" Next billing date: {_date(context, sub.current_period_end)}."
    return text


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
