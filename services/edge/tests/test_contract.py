"""The edge's HTTP contract as code (issue 18): the committed OpenAPI document is the one
the models build and a valid OpenAPI 3.1 document; the models refuse bad requests with the
edge's own 4xx words; the tools' schemas and MCP hints come from the same models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from edge import api_models, openapi, tool_models, tools

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
REGENERATE = "regenerate it: .venv/bin/python -m edge.openapi > docs/openapi.json"
_ALICE = {"user_id": "alice", "user_hash": "a" * 64}


def test_the_committed_document_is_the_one_the_models_build() -> None:
    assert COMMITTED.read_text() == openapi.dumps(), REGENERATE


def test_the_document_is_valid_openapi_3_1() -> None:
    document = json.loads(COMMITTED.read_text())
    validate(document)
    assert document["openapi"].startswith("3.1")
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_route_of_the_edge_is_documented() -> None:
    paths = openapi.document()["paths"]
    for path in (
        "/v1/chat/turns",
        "/v1/tools",
        "/v1/tools/{name}",
        "/mcp",
        "/v1/confirmations",
        "/v1/confirm/{token}",
        "/api/stripe/webhooks/{workspace_id}",
        "/api/whatsapp/webhook",
        "/v1/access/check",
        "/v1/admin/outcomes",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ):
        assert path in paths, path
    # The raw-body webhooks name the signature header they are verified by.
    stripe = paths["/api/stripe/webhooks/{workspace_id}"]["post"]["parameters"]
    assert {"name": "Stripe-Signature", "in": "header"}.items() <= stripe[1].items()
    whatsapp = paths["/api/whatsapp/webhook"]["post"]["parameters"]
    assert whatsapp[0]["name"] == "X-Hub-Signature-256" and whatsapp[0]["required"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {},
            {
                "workspace_id": api_models.ID_MESSAGE,
                "conversation_id": api_models.ID_MESSAGE,
                "text": "required",
            },
        ),
        (
            {"workspace_id": "ws\n", "conversation_id": 7, "text": "   ", "visitor": _ALICE},
            {
                "workspace_id": api_models.ID_MESSAGE,
                "conversation_id": api_models.ID_MESSAGE,
                "text": "required",
            },
        ),
        (
            {"workspace_id": "ws", "conversation_id": "c", "text": "hi", "visitor": []},
            {"visitor": "must be an object"},
        ),
        (
            {"workspace_id": "ws", "conversation_id": "c", "text": 1, "visitor": {"email": 5}},
            {"text": "required", "visitor.email": "must be a string"},
        ),
        (
            {
                "workspace_id": "ws",
                "conversation_id": "c",
                "text": "hi",
                "visitor": {"user_hash": "h", "token": "t"},
            },
            {"visitor": "give user_hash or token, not both"},
        ),
    ],
)
def test_a_bad_chat_turn_is_refused_field_by_field(body: Any, fields: dict[str, str]) -> None:
    assert api_models.check(api_models.ChatTurnRequest, body) == fields


def test_a_chat_turn_that_fits_is_the_model() -> None:
    turn = api_models.check(
        api_models.ChatTurnRequest,
        {"workspace_id": "ws_1", "conversation_id": "c:1", "text": "hi", "extra": 1},
    )
    assert isinstance(turn, api_models.ChatTurnRequest)
    assert turn.visitor == api_models.Visitor() and turn.text == "hi"


def test_a_bad_confirmation_and_access_check_are_refused_in_the_edges_words() -> None:
    refused = api_models.check(
        api_models.ConfirmationRequest,
        {"workspace_id": "ws", "conversation_id": "c", "quote_id": "q", "terms_hash": "F" * 64}
        | {"answer": "maybe"},
    )
    assert refused == {
        "terms_hash": "required: the quote's terms_hash (64 lower-case hex)",
        "answer": 'either "confirm" or "decline"',
    }
    access = api_models.check(
        api_models.AccessCheckRequest,
        {
            "workspace_id": "ws",
            "requirement": {
                "customer_statuses": ["active", "gold"],
                "require_active_trial": "yes",
                "colour": "red",
                "size": 1,
            },
        },
    )
    assert access == {
        "requirement.customer_statuses": "a list of active, trialing, past_due, canceled",
        "requirement.require_active_trial": "true or false",
        "requirement": "unknown fields: colour, size",
    }
    fits = api_models.check(
        api_models.AccessCheckRequest,
        {"workspace_id": "ws", "requirement": {"minimum_plan_tier": "enterprise"}},
    )
    assert isinstance(fits, api_models.AccessCheckRequest)


@pytest.mark.parametrize(
    ("name", "arguments", "fields"),
    [
        ("change_plan", {}, {"plan": "required"}),
        ("change_plan", {"plan": "  "}, {"plan": "required"}),
        ("change_plan", {"plan": None}, {"plan": "required"}),
        ("change_plan", {"plan": 5}, {"plan": "must be a string of at most 500 characters"}),
        ("request_refund", {"amount": "5"}, {"amount": "must be a positive number"}),
        ("request_refund", {"amount": True}, {"amount": "must be a positive number"}),
        ("request_refund", {"amount": -1}, {"amount": "must be a positive number"}),
        ("request_refund", {"amount": float("nan")}, {"amount": "must be a positive number"}),
        ("request_refund", {"amount": 2e9}, {"amount": "must be a positive number"}),
        ("get_subscription", {"x": 1}, {"x": "unknown argument"}),
        ("list_invoices", {"start_date": "soon"}, {"start_date": "must be a date (YYYY-MM-DD)"}),
        (
            "request_refund",
            {"confirmation_id": "q1"},
            {"confirmation_id": tools.CONFIRMATION_REFUSED},
        ),
    ],
)
def test_bad_tool_arguments_are_refused(
    name: str, arguments: dict[str, Any], fields: dict[str, str]
) -> None:
    with pytest.raises(tools.ToolArgumentError) as raised:
        tools.to_parsed(tools.TOOLS[name], arguments, datetime.now(UTC))
    assert raised.value.fields == fields


def test_tool_arguments_that_fit_become_the_request() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    refund = tools.to_parsed(
        tools.TOOLS["request_refund"], {"charge_id": "ch_1", "amount": 19.5}, now
    )
    assert refund.charge_id == "ch_1" and not refund.last_charge
    assert refund.amount is not None and str(refund.amount.major) == "19.5"
    plan = tools.to_parsed(tools.TOOLS["change_plan"], {"plan": " Growth "}, now)
    assert plan.plan == "growth"
    invoices = tools.to_parsed(
        tools.TOOLS["list_invoices"], {"start_date": "2026-01-01", "end_date": None}, now
    )
    assert invoices.period is not None and invoices.period.end == now


def test_every_tool_schema_is_a_json_schema_from_its_model() -> None:
    output = tool_models.output_schema()
    Draft202012Validator.check_schema(output)
    for tool in tools.TOOLS.values():
        schema = tool.input_schema
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["properties"]) == set(tool.arguments.model_fields), tool.name
        definition = tool_models.ToolDefinition.model_validate(tool.definition())
        assert definition.output_schema == output
    refund = tools.TOOLS["request_refund"].input_schema["properties"]["amount"]
    assert refund["type"] == "number" and refund["exclusiveMinimum"] == 0
    assert tools.TOOLS["change_plan"].input_schema["required"] == ["plan"]
    dates = tools.TOOLS["list_invoices"].input_schema["properties"]["start_date"]
    assert dates == {
        "type": "string",
        "format": "date",
        "maxLength": 500,
        "description": "First day.",
    }


def test_money_tools_are_not_read_only_and_refund_and_cancel_are_destructive() -> None:
    hints = {name: tool.annotations for name, tool in tools.TOOLS.items()}
    for name in ("request_refund", "cancel_subscription", "find_duplicate_charges"):
        assert hints[name]["destructiveHint"] is True, name
        assert hints[name]["readOnlyHint"] is False, name
    for name in ("get_subscription", "list_invoices", "list_plans", "preview_plan_change"):
        assert hints[name] == {"readOnlyHint": True, "openWorldHint": False}, name
    for tool in tools.TOOLS.values():
        if tool.moves_money:
            assert not tool.read_only, tool.name
    assert hints["request_refund"]["idempotentHint"] is False
    assert hints["cancel_subscription"]["idempotentHint"] is True
