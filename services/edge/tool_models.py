"""The tools' arguments and result as pydantic models: the JSON Schemas of ``GET /v1/tools``
and of MCP's ``inputSchema``/``outputSchema`` come from them, and a call's arguments are
checked against them (``tools.to_parsed``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Every string argument: at most 500 characters.
_Str = Annotated[str, StringConstraints(max_length=500)]
# A required one: some text that is not only white space.
_Named = Annotated[str, StringConstraints(max_length=500, pattern=r"\S")]
_PLAN = "Plan name, e.g. Growth."


class Arguments(BaseModel):
    """A tool's arguments: strict types, nothing unknown."""

    model_config = ConfigDict(strict=True, extra="forbid")


class NoArguments(Arguments):
    """The tool takes no argument."""


class InvoicePeriod(Arguments):
    start_date: _Str | None = Field(
        default=None, description="First day.", json_schema_extra={"format": "date"}
    )
    end_date: _Str | None = Field(
        default=None, description="Last day.", json_schema_extra={"format": "date"}
    )


class RefundArguments(Arguments):
    charge_id: _Str | None = Field(default=None, description="A charge id (ch_...).")
    amount: float | None = Field(
        default=None,
        gt=0,
        le=1e9,
        allow_inf_nan=False,
        description=(
            "Amount in major units of the charge's currency (19.5 is $19.50 on a "
            "dollar charge, 50 is ¥50 on a yen charge); the whole charge when omitted."
        ),
    )


class PlanArguments(Arguments):
    plan: _Named = Field(description=_PLAN)


class InvoiceArguments(Arguments):
    invoice_id: _Str | None = Field(default=None, description="An open invoice (in_...).")


class HandoffArguments(Arguments):
    note: _Str | None = Field(default=None, description="What the person needs, for the agent.")


class ToolResult(BaseModel):
    """What a tool call answers (``POST /v1/tools/{name}``, MCP ``structuredContent``)."""

    tool: str
    status: str = Field(
        description="ok, needs_confirmation, escalated, denied, not_found, handoff, error, ..."
    )
    message: str = Field(description="The answer in words, to relay to the customer.")
    data: dict[str, Any] = Field(
        description="Structured result; a money tool's quote is data.quote (quote_id, "
        "summary, terms_hash, expires_at, ...)."
    )
    escalated: bool
    escalation_id: str | None = Field(default=None, description="Present when escalated.")
    next_step: str | None = Field(
        default=None, description="Present with a quote: only the customer confirms it."
    )


def input_schema(model: type[Arguments]) -> dict[str, Any]:
    """A tool's input JSON Schema: an object of the model's fields, without the ``null`` an
    omitted argument stands for (omitting it is how to leave it out)."""
    schema = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        choices = [part for part in prop.pop("anyOf", []) if part.get("type") != "null"]
        if choices:
            (only,) = choices
            prop = {**only, **prop}
        prop.pop("default", None)
        prop.pop("title", None)
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": list(schema.get("required", [])),
        "additionalProperties": False,
    }


def output_schema() -> dict[str, Any]:
    """The tools' output JSON Schema (self-contained: no ``$ref``)."""
    return ToolResult.model_json_schema(mode="serialization")


class ToolDefinition(BaseModel):
    """One tool of ``GET /v1/tools``: JSON Schemas of its arguments and result, MCP hints."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: dict[str, bool] = Field(
        description="readOnlyHint, destructiveHint, idempotentHint, openWorldHint (as MCP's)."
    )


class ToolList(BaseModel):
    """``GET /v1/tools``."""

    tools: list[ToolDefinition]


class ToolCall(BaseModel):
    """``POST /v1/tools/{name}``: the arguments (the tool's ``input_schema``); a body without
    ``arguments`` is taken as the arguments themselves."""

    arguments: dict[str, Any] = Field(default_factory=dict)
