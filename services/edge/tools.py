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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from edge import tool_models
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
    """One tool: its name, what it does, its arguments' model, the intent it runs and its MCP
    hints. No tool reaches beyond the one customer's own billing account (a closed world)."""

    name: str
    description: str
    arguments: type[tool_models.Arguments]
    intent: Intent
    # Whether it quotes an action that moves money (the person confirms the quote); a
    # preview quotes nothing to confirm.
    moves_money: bool = False
    # Changes nothing (MCP readOnlyHint).
    read_only: bool = False
    # Takes something away: a refund, a cancellation, a plan (MCP destructiveHint).
    destructive: bool = False
    # Calling it again with the same arguments has no further effect (MCP idempotentHint).
    idempotent: bool = False

    @property
    def input_schema(self) -> dict[str, Any]:
        """The arguments' JSON Schema."""
        return tool_models.input_schema(self.arguments)

    @property
    def annotations(self) -> dict[str, bool]:
        """The MCP tool annotations (hints), by their MCP names."""
        hints = {"readOnlyHint": self.read_only, "openWorldHint": False}
        if not self.read_only:
            hints |= {"destructiveHint": self.destructive, "idempotentHint": self.idempotent}
        return hints

    def definition(self) -> dict[str, Any]:
        """The JSON-Schema tool definition."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": tool_models.output_schema(),
            "annotations": self.annotations,
        }


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "get_subscription",
            "The customer's plan, price, status, next billing date and last invoice.",
            tool_models.NoArguments,
            Intent.STATUS,
            read_only=True,
        ),
        Tool(
            "list_invoices",
            "The customer's invoices in a period, with PDF links.",
            tool_models.InvoicePeriod,
            Intent.INVOICES,
            read_only=True,
        ),
        Tool(
            "find_duplicate_charges",
            "Looks for a payment taken twice and offers to refund the duplicate."
            + _NEEDS_THE_PERSON,
            tool_models.NoArguments,
            Intent.DUPLICATE_CHARGE,
            moves_money=True,
            destructive=True,
        ),
        Tool(
            "request_refund",
            "Quotes a refund of one of the customer's charges (the latest when none is named), "
            "within the workspace's policy." + _NEEDS_THE_PERSON,
            tool_models.RefundArguments,
            Intent.REFUND,
            moves_money=True,
            destructive=True,
        ),
        Tool(
            "list_plans",
            "The plans on sale with prices and features.",
            tool_models.NoArguments,
            Intent.LIST_PLANS,
            read_only=True,
        ),
        Tool(
            "preview_plan_change",
            "Price difference, proration and unlocked features of moving to a plan, "
            "changing nothing.",
            tool_models.PlanArguments,
            Intent.CHANGE_PLAN,
            read_only=True,
        ),
        Tool(
            "change_plan",
            "Quotes moving the subscription to a plan." + _NEEDS_THE_PERSON,
            tool_models.PlanArguments,
            Intent.CHANGE_PLAN,
            moves_money=True,
            destructive=True,
            idempotent=True,
        ),
        Tool(
            "cancel_subscription",
            "Quotes a cancellation after a grace period in which it can be undone."
            + _NEEDS_THE_PERSON,
            tool_models.NoArguments,
            Intent.CANCEL,
            moves_money=True,
            destructive=True,
            idempotent=True,
        ),
        Tool(
            "undo_cancellation",
            "Voids a scheduled cancellation.",
            tool_models.NoArguments,
            Intent.UNDO,
            idempotent=True,
        ),
        Tool(
            "pause_subscription",
            "Quotes pausing payment collection." + _NEEDS_THE_PERSON,
            tool_models.NoArguments,
            Intent.PAUSE,
            moves_money=True,
            idempotent=True,
        ),
        Tool(
            "resume_subscription",
            "Quotes resuming payment collection on a paused subscription." + _NEEDS_THE_PERSON,
            tool_models.NoArguments,
            Intent.RESUME,
            moves_money=True,
            idempotent=True,
        ),
        Tool(
            "retry_payment",
            "Quotes charging the card again for the customer's unpaid invoice." + _NEEDS_THE_PERSON,
            tool_models.InvoiceArguments,
            Intent.RETRY_PAYMENT,
            moves_money=True,
        ),
        Tool(
            "payment_method_update_link",
            "A secure link where the customer updates their card.",
            tool_models.NoArguments,
            Intent.UPDATE_CARD,
            read_only=True,
        ),
        Tool(
            "handoff_to_human",
            "Hands the conversation to a human agent with its context.",
            tool_models.HandoffArguments,
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


# A bad value's problem, by the kind of value the argument takes.
_BAD_STRING = "must be a string of at most 500 characters"
_BAD_NUMBER = "must be a positive number"


def _problems(failure: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for item in failure.errors():
        name = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems[name] = "unknown argument"
        elif item["type"] in ("missing", "string_pattern_mismatch"):
            problems[name] = "required"
        elif item["type"].startswith(("string", "str")):
            problems[name] = _BAD_STRING
        else:
            problems[name] = _BAD_NUMBER
    return problems


def to_parsed(tool: Tool, arguments: dict[str, Any], now: datetime) -> Parsed:
    """The request a tool call stands for; ToolArgumentError when the arguments do not fit
    the tool's model (a null argument is an omitted one)."""
    try:
        given = tool.arguments.model_validate(
            {name: value for name, value in arguments.items() if value is not None}
        )
    except ValidationError as failure:
        problems = _problems(failure)
    else:
        problems = {}
    if "confirmation_id" in arguments:
        # Earlier versions confirmed with it; say why it no longer does.
        problems["confirmation_id"] = CONFIRMATION_REFUSED
    if problems:
        raise ToolArgumentError(problems)
    values = given.model_dump(exclude_none=True)
    period = None
    if isinstance(given, tool_models.InvoicePeriod):
        start = _date(given.start_date, "start_date", problems, now.tzinfo)
        end = _date(given.end_date, "end_date", problems, now.tzinfo)
        if problems:
            raise ToolArgumentError(problems)
        if start or end:
            start = start or datetime(1970, 1, 1, tzinfo=now.tzinfo)
            end = (end + timedelta(days=1)) if end else now
            label = f"{start:%b %d, %Y} to {(end - timedelta(days=1)):%b %d, %Y}"
            period = Period(start, end, label)
    amount = None
    if "amount" in values:
        # Major units of the charge's currency, which is known only once the charge is chosen.
        amount = MoneyAmount(Decimal(str(arguments["amount"])), "")
    return Parsed(
        tool.intent,
        period=period,
        amount=amount,
        plan=str(values.get("plan", "")).strip().lower(),
        charge_id=str(values.get("charge_id", "")),
        invoice_id=str(values.get("invoice_id", "")),
        last_charge=not values.get("charge_id"),
    )
