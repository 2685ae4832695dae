"""The skill as tools a language model can call: JSON-Schema definitions, and the mapping of
a tool call to the same request a chat turn makes (identity from the request, never from
arguments; policy exactly as in chat).

A tool proposes; it never confirms. A money action called as a tool answers
``needs_confirmation`` with a quote (what will happen, amounts, the hash of those terms, when
the offer expires), and runs only when the person confirms it themselves: a "yes" typed in
their own chat, the chat UI's confirm button (``POST /v1/confirmations`` with the visitor's
own proof), or the confirmation page an MCP client opens for them (URL elicitation). No
argument and no sequence of tool calls stands in for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from edge.domain.intents import Intent, MoneyAmount, Parsed, Period

# Appended to the description of every tool that moves money.
_NEEDS_THE_PERSON = (
    " Moves money only after the customer confirms the returned quote themselves (in their "
    "chat or on the confirmation page); you cannot confirm for them. Tell the customer what "
    "the quote says and that they need to confirm it."
)
# Told to the model with every quote: it relays the quote, the person confirms.
NEXT_STEP_CONFIRM = (
    "Tell the customer these terms. Only the customer can confirm them: in their "
    "own chat (typing yes or pressing the confirm button) or on the confirmation "
    "page their assistant app opens. Calling this tool again does not confirm."
)
# What a tool answers when called with the retired confirmation argument.
CONFIRMATION_REFUSED = (
    "tools cannot confirm: the customer confirms the quote in their own chat or on the "
    "confirmation page"
)


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does, its argument schema and the intent it runs."""

    name: str
    description: str
    properties: dict[str, Any]
    intent: Intent
    required: tuple[str, ...] = ()
    # Whether it quotes an action that moves money (the person confirms the quote); a
    # preview quotes nothing to confirm.
    moves_money: bool = False

    def definition(self) -> dict[str, Any]:
        """The JSON-Schema tool definition."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": {
                "type": "object",
                "properties": self.properties,
                "required": list(self.required),
                "additionalProperties": False,
            },
        }


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "get_subscription",
            "The customer's plan, price, status, next billing date and last invoice.",
            {},
            Intent.STATUS,
        ),
        Tool(
            "list_invoices",
            "The customer's invoices in a period, with PDF links.",
            {
                "start_date": {"type": "string", "format": "date", "description": "First day."},
                "end_date": {"type": "string", "format": "date", "description": "Last day."},
            },
            Intent.INVOICES,
        ),
        Tool(
            "find_duplicate_charges",
            "Looks for a payment taken twice and offers to refund the duplicate."
            + _NEEDS_THE_PERSON,
            {},
            Intent.DUPLICATE_CHARGE,
            moves_money=True,
        ),
        Tool(
            "request_refund",
            "Quotes a refund of one of the customer's charges (the latest when none is named), "
            "within the workspace's policy." + _NEEDS_THE_PERSON,
            {
                "charge_id": {"type": "string", "description": "A charge id (ch_...)."},
                "amount": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": (
                        "Amount in major units of the charge's currency (19.5 is $19.50 on a "
                        "dollar charge, 50 is ¥50 on a yen charge); the whole charge when omitted."
                    ),
                },
            },
            Intent.REFUND,
            moves_money=True,
        ),
        Tool("list_plans", "The plans on sale with prices and features.", {}, Intent.LIST_PLANS),
        Tool(
            "preview_plan_change",
            "Price difference, proration and unlocked features of moving to a plan, "
            "changing nothing.",
            {"plan": {"type": "string", "description": "Plan name, e.g. Growth."}},
            Intent.CHANGE_PLAN,
            ("plan",),
        ),
        Tool(
            "change_plan",
            "Quotes moving the subscription to a plan." + _NEEDS_THE_PERSON,
            {"plan": {"type": "string", "description": "Plan name, e.g. Growth."}},
            Intent.CHANGE_PLAN,
            ("plan",),
            moves_money=True,
        ),
        Tool(
            "cancel_subscription",
            "Quotes a cancellation after a grace period in which it can be undone."
            + _NEEDS_THE_PERSON,
            {},
            Intent.CANCEL,
            moves_money=True,
        ),
        Tool("undo_cancellation", "Voids a scheduled cancellation.", {}, Intent.UNDO),
        Tool(
            "pause_subscription",
            "Quotes pausing payment collection." + _NEEDS_THE_PERSON,
            {},
            Intent.PAUSE,
            moves_money=True,
        ),
        Tool(
            "resume_subscription",
            "Quotes resuming payment collection on a paused subscription." + _NEEDS_THE_PERSON,
            {},
            Intent.RESUME,
            moves_money=True,
        ),
        Tool(
            "retry_payment",
            "Quotes charging the card again for the customer's unpaid invoice." + _NEEDS_THE_PERSON,
            {"invoice_id": {"type": "string", "description": "An open invoice (in_...)."}},
            Intent.RETRY_PAYMENT,
            moves_money=True,
        ),
        Tool(
            "payment_method_update_link",
            "A secure link where the customer updates their card.",
            {},
            Intent.UPDATE_CARD,
        ),
        Tool(
            "handoff_to_human",
            "Hands the conversation to a human agent with its context.",
            {"note": {"type": "string", "maxLength": 500}},
            Intent.HUMAN,
        ),
    )
}


class ToolArgumentError(ValueError):
    """An argument that does not fit the tool's schema; ``fields`` maps path to problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def _date(value: Any, field: str, problems: dict[str, str], zone: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=zone)
    except ValueError:
        problems[field] = "must be a date (YYYY-MM-DD)"
        return None


def to_parsed(tool: Tool, arguments: dict[str, Any], now: datetime) -> Parsed:
    """The request a tool call stands for."""
    problems: dict[str, str] = {}
    unknown = set(arguments) - set(tool.properties)
    for name in sorted(unknown):
        problems[name] = "unknown argument"
    if "confirmation_id" in arguments:
        # Earlier versions confirmed with it; say why it no longer does.
        problems["confirmation_id"] = CONFIRMATION_REFUSED
    for name in tool.required:
        if not isinstance(arguments.get(name), str) or not arguments[name].strip():
            problems[name] = "required"
    for name, schema in tool.properties.items():
        value = arguments.get(name)
        if value is None:
            continue
        if schema["type"] == "string" and (not isinstance(value, str) or len(value) > 500):
            problems[name] = "must be a string of at most 500 characters"
        if schema["type"] == "number" and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value <= 0
            or value > 1e9
        ):
            problems[name] = "must be a positive number"
    if problems:
        raise ToolArgumentError(problems)
    period = None
    if tool.name == "list_invoices":
        start = _date(arguments.get("start_date"), "start_date", problems, now.tzinfo)
        end = _date(arguments.get("end_date"), "end_date", problems, now.tzinfo)
        if problems:
            raise ToolArgumentError(problems)
        if start or end:
            from datetime import timedelta

            start = start or datetime(1970, 1, 1, tzinfo=now.tzinfo)
            end = (end + timedelta(days=1)) if end else now
            label = f"{start:%b %d, %Y} to {(end - timedelta(days=1)):%b %d, %Y}"
            period = Period(start, end, label)
    amount = None
    if "amount" in arguments:
        # Major units of the charge's currency, which is known only once the charge is chosen.
        amount = MoneyAmount(Decimal(str(arguments["amount"])), "")
    plan = str(arguments.get("plan", "")).strip().lower()
    parsed = Parsed(
        tool.intent,
        period=period,
        amount=amount,
        plan=plan,
        charge_id=str(arguments.get("charge_id", "")),
        invoice_id=str(arguments.get("invoice_id", "")),
        last_charge=not arguments.get("charge_id"),
    )
    return parsed
