"""The running edge keeps its contract (issue 18): it serves the committed OpenAPI document,
its answers are the documented models, and over a real MCP session its tools carry output
schemas and hints, with structured results that validate against the output schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel

from edge import api_models, tool_models
from tests.e2e.conftest import WORKSPACE, Stack, user_hash

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def _headers(user: str) -> dict[str, str]:
    return {
        "X-AskVault-Workspace": WORKSPACE,
        "X-AskVault-User-Id": user,
        "X-AskVault-User-Email": f"{user}@example.com",
        "X-AskVault-User-Hash": user_hash(user),
        "X-AskVault-Conversation": "contract",
    }


async def _get(stack: Stack, path: str) -> tuple[int, Any]:
    async with stack.http.get(f"{stack.edge_url}{path}") as response:
        return response.status, await response.json()


async def _post(stack: Stack, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with stack.http.post(f"{stack.edge_url}{path}", json=body, headers=headers) as answer:
        return answer.status, await answer.json()


def _is(model: type[BaseModel], body: Any) -> None:
    model.model_validate(body, strict=False)


async def test_the_edge_serves_the_committed_openapi_document(stack: Stack) -> None:
    status, served = await _get(stack, "/openapi.json")
    assert status == 200
    assert served == json.loads(COMMITTED.read_text()), (
        "docs/openapi.json differs from the served document; regenerate it: "
        ".venv/bin/python -m edge.openapi > docs/openapi.json"
    )


async def test_the_edges_answers_are_the_documented_models(stack: Stack) -> None:
    turn = {
        "workspace_id": WORKSPACE,
        "conversation_id": "contract",
        "visitor": {"user_id": "alice", "user_hash": user_hash("alice")},
        "text": "what plan am I on?",
    }
    status, reply = await _post(stack, "/v1/chat/turns", turn)
    assert status == 200, reply
    _is(api_models.ChatTurnReply, reply)
    status, refused = await _post(stack, "/v1/chat/turns", {**turn, "text": " ", "visitor": 1})
    assert status == 400
    _is(api_models.ErrorBody, refused)
    assert refused["error"]["fields"] == {"text": "required", "visitor": "must be an object"}

    status, listed = await _get(stack, "/v1/tools")
    assert status == 200
    _is(tool_models.ToolList, listed)
    for name in ("get_subscription", "request_refund"):
        status, result = await _post(
            stack, f"/v1/tools/{name}", {"arguments": {}}, **_headers("alice")
        )
        assert status == 200, result
        _is(tool_models.ToolResult, result)
    assert result["status"] == "needs_confirmation" and result["next_step"], result

    status, access = await _post(
        stack,
        "/v1/access/check",
        {"workspace_id": WORKSPACE, "visitor": turn["visitor"], "requirement": {"x": 1}},
    )
    assert status == 400 and access["error"]["fields"] == {"requirement": "unknown fields: x"}
    status, access = await _post(
        stack,
        "/v1/access/check",
        {"workspace_id": WORKSPACE, "visitor": turn["visitor"], "requirement": {}},
    )
    assert status == 200, access
    _is(api_models.AccessCheckReply, access)
    _is(api_models.Liveness, (await _get(stack, "/healthz"))[1])
    _is(api_models.Readiness, (await _get(stack, "/readyz"))[1])


async def test_mcp_tools_carry_output_schemas_and_hints(stack: Stack) -> None:
    async with (
        httpx2.AsyncClient(headers=_headers("alice"), timeout=30) as http,
        Client(streamable_http_client(f"{stack.edge_url}/mcp", http_client=http)) as client,
    ):
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(listed) >= {"get_subscription", "request_refund", "cancel_subscription"}
        for tool in listed.values():
            assert tool.output_schema == tool_models.output_schema(), tool.name
            assert tool.annotations is not None, tool.name
            assert tool.annotations.open_world_hint is False, tool.name
        for name in ("request_refund", "cancel_subscription"):
            hints = listed[name].annotations
            assert hints is not None and hints.destructive_hint is True, name
            assert hints.read_only_hint is False, name
        for name in ("get_subscription", "list_invoices", "list_plans"):
            hints = listed[name].annotations
            assert hints is not None and hints.read_only_hint is True, name
        undo = listed["undo_cancellation"].annotations
        assert undo is not None and undo.idempotent_hint is True

        result = await client.call_tool("get_subscription", {})
        assert not result.is_error, result
        assert result.structured_content is not None
        schema = listed["get_subscription"].output_schema
        assert schema is not None
        errors = list(Draft202012Validator(schema).iter_errors(result.structured_content))
        assert errors == [], errors
        assert result.structured_content["status"] == "ok", result
        assert "Growth" in result.structured_content["message"], result
        # A refused call is an error result, with the edge's error body.
        refused = await client.call_tool("change_plan", {"plan": 5})
        assert refused.is_error and refused.structured_content is not None
        _is(api_models.ErrorBody, refused.structured_content)
