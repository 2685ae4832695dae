"""The message templates: for each, its variables, the email (subject, text, HTML) and the
WhatsApp form (an approved template with its body parameters and quick-reply buttons, or
free-form text for chat replies).

Rendering rules:
- ``{name}`` in a line is replaced by the variable; a line naming an *optional* variable
  that is empty is left out, so optional details need no conditionals.
- HTML gets escaped values; text and WhatsApp get them as they are.
- Values that come from users (free text: a chat reply, an escalation's summary) pass
  through ``runtime.logs.redact``, so a card number typed into the chat never leaves in a
  message. Templates never ask for card data.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from notifier.domain import escalation_templates, outbox
from notifier.domain.template_parts import FOOTER_HTML, FOOTER_TEXT, Button
from notifier.domain.template_parts import Template as Template
from runtime import errors, logs

# Quick-reply payloads of the failed-payment template; the edge maps a reply to an action.
RETRY_PAYMENT = "RETRY_PAYMENT"
UPDATE_CARD = "UPDATE_CARD"
TALK_TO_HUMAN = "TALK_TO_HUMAN"

# The confirmation of a WhatsApp opt-out: it goes on WhatsApp although the contact just
# opted out of it (it answers their STOP), and nothing else does.
WHATSAPP_OPTED_OUT = outbox.WHATSAPP_OPTED_OUT_TEMPLATE

MAX_VARIABLES = 50
MAX_VARIABLE_NAME = 64
MAX_VARIABLE_VALUE = 4000
# WhatsApp refuses body parameters with new lines, tabs or more than four spaces in a row.
_WHATSAPP_PARAM_BAD = re.compile(r"[\n\t\r]+| {4,}")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Email:
    """A rendered email."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class WhatsAppContent:
    """A rendered WhatsApp message: a template with parameters and buttons, or free text."""

    template_name: str
    body_params: tuple[str, ...]
    buttons: tuple[Button, ...]
    text: str

    @property
    def is_template(self) -> bool:
        """Whether this is a template message (free-form text needs the 24 h window)."""
        return bool(self.template_name)


TEMPLATES: dict[str, Template] = {
    t.key: t
    for t in (
        Template(
            key="payment_failed",
            required=("amount", "update_card_url"),
            optional=("invoice_url", "plan_name", "support_url"),
            subject="Your payment of {amount} did not go through",
            # Every way out is one the system keeps: the invoice page pays at once, the card
            # link is Stripe's, and support is a link, a reply read by the workspace (its
            # reply-to address), or the chat's hand-off; never "reply RETRY" to an email.
            text=(
                "Hi {name},\n\n"
                "We could not collect your payment of {amount}.\n"
                "Plan: {plan_name}\n"
                "You can:\n"
                "- retry now: {retry_option}\n"
                "- update your card: {update_card_url}\n"
                "- talk to support: {support_option}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>We could not collect your payment of <b>{amount}</b>.</p>\n"
                "<p>Plan: {plan_name}</p>\n"
                "<ul><li>Retry now: {retry_option}</li>\n"
                "<li><a href='{update_card_url}'>Update your card</a></li>\n"
                "<li>Talk to support: {support_option}</li></ul>\n" + FOOTER_HTML
            ),
            whatsapp_name="payment_failed_v1",
            whatsapp_params=("name", "amount"),
            whatsapp_buttons=(
                Button("Retry now", RETRY_PAYMENT),
                Button("Update card", UPDATE_CARD),
                Button("Talk to support", TALK_TO_HUMAN),
            ),
            links=("update_card_url", "invoice_url", "support_url"),
        ),
        Template(
            key="refund_confirmation",
            required=("amount",),
            optional=("charge_date", "reference", "arrival_note"),
            subject="Your refund of {amount} is on its way",
            text=(
                "Hi {name},\n\n"
                "We refunded {amount}.\n"
                "Original charge: {charge_date}\n"
                "Reference: {reference}\n"
                "{arrival_note}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n<p>We refunded <b>{amount}</b>.</p>\n"
                "<p>Original charge: {charge_date}</p>\n<p>Reference: {reference}</p>\n"
                "<p>{arrival_note}</p>\n" + FOOTER_HTML
            ),
            whatsapp_name="refund_confirmation_v1",
            whatsapp_params=("name", "amount"),
        ),
        Template(
            key="plan_change_confirmation",
            required=("new_plan",),
            optional=("old_plan", "effective_date", "proration", "unlocks", "loses"),
            subject="Your plan is now {new_plan}",
            text=(
                "Hi {name},\n\n"
                "Your plan changed to {new_plan}.\n"
                "Previous plan: {old_plan}\n"
                "Effective: {effective_date}\n"
                "Proration on your next invoice: {proration}\n"
                "What it unlocks: {unlocks}\n"
                "No longer included: {loses}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n<p>Your plan changed to <b>{new_plan}</b>.</p>\n"
                "<p>Previous plan: {old_plan}</p>\n<p>Effective: {effective_date}</p>\n"
                "<p>Proration on your next invoice: {proration}</p>\n"
                "<p>What it unlocks: {unlocks}</p>\n"
                "<p>No longer included: {loses}</p>\n" + FOOTER_HTML
            ),
            whatsapp_name="plan_change_confirmation_v1",
            whatsapp_params=("name", "new_plan"),
        ),
        Template(
            key="cancellation_scheduled",
            required=("cancel_at",),
            optional=("plan_name", "undo_url"),
            subject="Your subscription will end on {cancel_at}",
            text=(
                "Hi {name},\n\n"
                "Your subscription {plan_name} is scheduled to end on {cancel_at}.\n"
                "Changed your mind? Reply UNDO before then.\n"
                "Or undo it here: {undo_url}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>Your subscription {plan_name} is scheduled to end on <b>{cancel_at}</b>.</p>\n"
                "<p>Changed your mind? Reply UNDO before then.</p>\n"
                "<p><a href='{undo_url}'>Undo the cancellation</a></p>\n" + FOOTER_HTML
            ),
            whatsapp_name="cancellation_scheduled_v1",
            whatsapp_params=("name", "cancel_at"),
            links=("undo_url",),
        ),
        Template(
            key="cancellation_undone",
            required=(),
            optional=("plan_name",),
            subject="Your subscription continues",
            text=(
                "Hi {name},\n\n"
                "The cancellation is undone; your subscription continues.\n"
                "Plan: {plan_name}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>The cancellation is undone; your subscription continues.</p>\n"
                "<p>Plan: {plan_name}</p>\n" + FOOTER_HTML
            ),
            whatsapp_name="cancellation_undone_v1",
            whatsapp_params=("name",),
        ),
        Template(
            key="cancellation_done",
            required=(),
            optional=("plan_name", "ended_at"),
            subject="Your subscription has ended",
            text=(
                "Hi {name},\n\n"
                "Your subscription {plan_name} has been canceled.\n"
                "Ended: {ended_at}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>Your subscription {plan_name} has been canceled.</p>\n"
                "<p>Ended: {ended_at}</p>\n" + FOOTER_HTML
            ),
            whatsapp_name="cancellation_done_v1",
            whatsapp_params=("name",),
        ),
        Template(
            key="offboarding",
            required=(),
            optional=(
                "plan_name",
                "ended_at",
                "export_url",
                "feedback_url",
                "resubscribe_url",
                "data_retention_until",
            ),
            subject="Your subscription has ended",
            text=(
                "Hi {name},\n\n"
                "Your subscription has ended.\n"
                "Plan: {plan_name}\n"
                "Ended: {ended_at}\n"
                "Thank you for having been with us.\n"
                "Export your data: {export_url}\n"
                "We keep your data until {data_retention_until}.\n"
                "Tell us why you left: {feedback_url}\n"
                "Come back any time: {resubscribe_url}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>Your subscription has ended.</p>\n"
                "<p>Plan: {plan_name}</p>\n<p>Ended: {ended_at}</p>\n"
                "<p>Thank you for having been with us.</p>\n"
                "<p><a href='{export_url}'>Export your data</a></p>\n"
                "<p>We keep your data until {data_retention_until}.</p>\n"
                "<p><a href='{feedback_url}'>Tell us why you left</a></p>\n"
                "<p><a href='{resubscribe_url}'>Come back any time</a></p>\n" + FOOTER_HTML
            ),
            whatsapp_name="offboarding_v1",
            whatsapp_params=("name",),
            links=("export_url", "feedback_url", "resubscribe_url"),
        ),
        Template(
            key="invoice_bundle",
            required=("period",),
            optional=("invoice_links",),
            subject="Your invoices for {period}",
            text=(
                "Hi {name},\n\n"
                "Here are your invoices for {period} (attached).\n"
                "{invoice_links}\n" + FOOTER_TEXT
            ),
            html=(
                "<p>Hi {name},</p>\n"
                "<p>Here are your invoices for <b>{period}</b> (attached).</p>\n"
                "<pre>{invoice_links}</pre>\n" + FOOTER_HTML
            ),
            whatsapp_name="invoice_bundle_v1",
            whatsapp_params=("name", "period"),
        ),
        Template(
            key="handoff",
            required=("reason", "summary"),
            optional=(
                "escalation_id",
                "customer_email",
                "customer_name",
                "stripe_customer_id",
                "amount",
                "transcript",
                "conversation_url",
            ),
            subject="Hand-off: {reason}",
            text=(
                "A conversation needs a human.\n\n"
                "Reason: {reason}\n"
                "Escalation: {escalation_id}\n"
                "Customer: {customer_name}\n"
                "Email: {customer_email}\n"
                "Stripe customer: {stripe_customer_id}\n"
                "Amount: {amount}\n"
                "Conversation: {conversation_url}\n\n"
                "Summary:\n{summary}\n\n"
                "Transcript:\n{transcript}\n"
            ),
            html=(
                "<p>A conversation needs a human.</p>\n<table>\n"
                "<tr><td>Reason</td><td>{reason}</td></tr>\n"
                "<tr><td>Escalation</td><td>{escalation_id}</td></tr>\n"
                "<tr><td>Customer</td><td>{customer_name}</td></tr>\n"
                "<tr><td>Email</td><td>{customer_email}</td></tr>\n"
                "<tr><td>Stripe customer</td><td>{stripe_customer_id}</td></tr>\n"
                "<tr><td>Amount</td><td>{amount}</td></tr>\n"
                "<tr><td>Conversation</td><td><a href='{conversation_url}'>open</a></td></tr>\n"
                "</table>\n<h4>Summary</h4><pre>{summary}</pre>\n"
                "<h4>Transcript</h4><pre>{transcript}</pre>\n"
            ),
            free_text=("summary", "transcript", "reason"),
            links=("conversation_url",),
        ),
        Template(
            key=WHATSAPP_OPTED_OUT,
            required=("text",),
            optional=(),
            subject="{sender_name}: WhatsApp messages stopped",
            text="Hi {name},\n\n{text}\n" + FOOTER_TEXT,
            html="<p>Hi {name},</p>\n<p>{text}</p>\n" + FOOTER_HTML,
            free_text=("text",),
        ),
        Template(
            key="chat_reply",
            required=("text",),
            optional=(),
            subject="{sender_name}: a reply to your message",
            text="Hi {name},\n\n{text}\n" + FOOTER_TEXT,
            html="<p>Hi {name},</p>\n<p>{text}</p>\n" + FOOTER_HTML,
            free_text=("text",),
        ),
        *escalation_templates.TEMPLATES,
    )
}


def get(key: str) -> Template:
    """The template of a key ("payment_failed"); KeyError for an unknown one."""
    return TEMPLATES[key]


def check_variables(template: Template, variables: Mapping[str, str]) -> None:
    """Raises INVALID_ARGUMENT naming every missing, unknown or malformed variable."""
    check = errors.Validator()
    check.require(len(variables) <= MAX_VARIABLES, "variables", f"at most {MAX_VARIABLES}")
    known = set(template.required) | set(template.optional) | set(template.implicit)
    for name in template.required:
        check.require(
            bool(variables.get(name, "").strip()),
            f"variables.{name}",
            f"required by the {template.key} template",
        )
    for name, value in sorted(variables.items()):
        path = f"variables.{name}"
        check.require(name in known, path, f"not a variable of the {template.key} template")
        check.require(len(name) <= MAX_VARIABLE_NAME, path, "name too long")
        check.require(len(value) <= MAX_VARIABLE_VALUE, path, "value too long")
        if name in template.links and value:
            check.require(
                value.startswith(("https://", "http://")), path, "must be an http(s) link"
            )
    extra_check = escalation_templates.CHECKS.get(template.key)
    if extra_check is not None:
        extra_check(variables, check)
    check.check()


def _payment_options(variables: Mapping[str, str], reply_to: str) -> dict[str, str]:
    """The failed-payment message's "retry now" and "talk to support", each always there."""
    invoice = variables.get("invoice_url", "")
    support = variables.get("support_url", "")
    return {
        "retry_option": (
            f"pay the invoice with the card on file or another one: {invoice}"
            if invoice
            else 'say "retry my payment" in our chat'
        ),
        "support_option": (
            support
            if support
            else "reply to this email"
            if reply_to
            else 'say "talk to a human" in our chat'
        ),
    }


# Values a template's lines use that are made from its variables and the workspace's
# settings (the reply-to address), by template key.
_DERIVED: dict[str, Callable[[Mapping[str, str], str], dict[str, str]]] = {
    "payment_failed": _payment_options,
    **escalation_templates.DERIVED,
}


def _values(
    template: Template,
    variables: Mapping[str, str],
    name: str,
    sender: str,
    reply_to: str = "",
) -> dict[str, str]:
    values = {key: variables.get(key, "") for key in (*template.required, *template.optional)}
    derive = _DERIVED.get(template.key)
    if derive is not None:
        values.update(derive(variables, reply_to))
    for key in template.free_text:
        values[key] = logs.redact(values[key])
    values["name"] = variables.get("name") or name or "there"
    values["sender_name"] = variables.get("sender_name") or sender
    return values


def _fill(pattern: str, values: Mapping[str, str], optional: frozenset[str], escape: bool) -> str:
    lines = []
    for line in pattern.split("\n"):
        names = _PLACEHOLDER.findall(line)
        if any(key in optional and not values.get(key) for key in names):
            continue
        lines.append(
            _PLACEHOLDER.sub(
                lambda match: (
                    html.escape(values.get(match[1], "")) if escape else values.get(match[1], "")
                ),
                line,
            )
        )
    return "\n".join(lines)


def render_email(
    template: Template,
    variables: Mapping[str, str],
    *,
    name: str,
    sender_name: str,
    reply_to: str = "",
) -> Email:
    """The subject, text and HTML of the template for these variables; ``reply_to`` is where
    a reply to the email goes (a workspace's address read by people), '' for nowhere."""
    values = _values(template, variables, name, sender_name, reply_to)
    # Optional variables and derived values: a line naming one that is empty is left out.
    optional = frozenset(values) - frozenset(template.required) - frozenset(template.implicit)
    subject = _fill(template.subject, values, frozenset(), escape=False)
    return Email(
        subject=" ".join(subject.split()),
        text=_fill(template.text, values, optional, escape=False),
        html=_fill(template.html, values, optional, escape=True),
    )


def _whatsapp_param(value: str) -> str:
    return _WHATSAPP_PARAM_BAD.sub(" ", value).strip() or "-"


def render_whatsapp(
    template: Template, variables: Mapping[str, str], *, name: str, sender_name: str
) -> WhatsAppContent:
    """The WhatsApp form: the approved template with its parameters, or free text."""
    values = _values(template, variables, name, sender_name)
    if template.whatsapp_name:
        return WhatsAppContent(
            template_name=template.whatsapp_name,
            body_params=tuple(_whatsapp_param(values[key]) for key in template.whatsapp_params),
            buttons=template.whatsapp_buttons,
            text="",
        )
    return WhatsAppContent(
        template_name="",
        body_params=(),
        buttons=(),
        # A chat reply goes as the agent or bot wrote it, without greeting or footer.
        text=values.get("text", ""),
    )


def whatsapp_capable(template: Template) -> bool:
    """Whether the template can go by WhatsApp at all (hand-offs go to agents only)."""
    return template.key != "handoff"
