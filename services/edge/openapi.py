"""The edge's OpenAPI 3.1 document, built from the request and answer models
(``api_models``, ``tool_models``, ``outcomes_models``); served at ``GET /openapi.json`` and
committed as ``docs/openapi.json``. Regenerate the committed copy with
``.venv/bin/python -m edge.openapi > docs/openapi.json``."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from edge import api_models as m
from edge import tool_models, tools
from edge.outcomes_models import OutcomesReport

_REF = "#/components/schemas/{model}"
_REQUESTS: list[type[BaseModel]] = [
    m.ChatTurnRequest,
    m.ConfirmationRequest,
    m.AccessCheckRequest,
    tool_models.ToolCall,
]
_ANSWERS: list[type[BaseModel]] = [
    m.ErrorBody,
    m.ChatTurnReply,
    m.ConfirmationReply,
    m.AccessCheckReply,
    m.StripeEventReceived,
    m.WhatsAppReceived,
    m.Liveness,
    m.Readiness,
    tool_models.ToolList,
    tool_models.ToolResult,
    OutcomesReport,
]
_ERRORS = {
    "400": "Invalid request: ``fields`` names each problem.",
    "401": "Not authenticated.",
    "403": "Refused.",
    "404": "Not found.",
    "409": "A turn with this Idempotency-Key is still running: retry after Retry-After.",
    "413": "Body too large.",
    "422": "IDEMPOTENCY_MISMATCH: the Idempotency-Key was used for another turn or visitor.",
    "429": "Too many requests from this address (or visitor): retry after Retry-After (60 s).",
    "502": "A service refused the request.",
    "503": (
        "The edge is at capacity (OVERLOADED; Retry-After 1 s by default) or a service or the"
        " database is unavailable (Retry-After 2 s): nothing was done; retry after Retry-After."
    ),
}
_ID_SCHEMA = {"type": "string", "pattern": m.ID_REGEX}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _answers(ok: type[BaseModel] | None, *errors: int, ok_text: str = "OK") -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": ok_text}}
    if ok is not None:
        answers["200"]["content"] = _json(ok)
    for status in errors:
        answers[str(status)] = {"description": _ERRORS[str(status)], "content": _json(m.ErrorBody)}
    return answers


def _header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string"},
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_TOOL_HEADERS = [
    _header("X-AskVault-Workspace", "The workspace id.", required=True),
    _header("X-AskVault-User-Id", "The visitor's user id."),
    _header("X-AskVault-User-Email", "The visitor's email."),
    _header("X-AskVault-User-Hash", "The visitor's proof: HMAC of the user id."),
    _header("X-AskVault-Conversation", "The conversation id (default: tools)."),
]
_RAW_JSON = {"application/json": {"schema": {"type": "object"}}}


def _paths() -> dict[str, Any]:
    body = "requestBody"
    return {
        "/v1/chat/turns": {
            "post": {
                "summary": "One chat turn of a visitor",
                "parameters": [_header("Idempotency-Key", m.CHAT_TURN_IDEMPOTENCY_KEY)],
                body: {"required": True, "content": _json(m.ChatTurnRequest)},
                "responses": _answers(m.ChatTurnReply, 400, 403, 409, 413, 422, 429, 502, 503),
            }
        },
        "/v1/tools": {
            "get": {
                "summary": "The tools, with JSON Schemas and MCP hints",
                "responses": _answers(tool_models.ToolList, 429),
            }
        },
        "/v1/tools/{name}": {
            "post": {
                "summary": "Calls a tool as the visitor the headers name; a money tool quotes",
                "parameters": [
                    _path("name", {"type": "string", "enum": list(tools.TOOLS)}),
                    *_TOOL_HEADERS,
                ],
                "security": [{}, {"visitorToken": []}],
                body: {"required": False, "content": _json(tool_models.ToolCall)},
                "responses": _answers(tool_models.ToolResult, 400, 403, 404, 413, 429, 502, 503),
            }
        },
        "/mcp": {
            "post": {
                "summary": "The same tools over MCP (streamable HTTP, stateless, JSON answers)",
                "description": "JSON-RPC 2.0 messages of the Model Context Protocol; identity "
                "from the same headers as POST /v1/tools/{name}.",
                "parameters": _TOOL_HEADERS,
                "security": [{}, {"visitorToken": []}],
                body: {"required": True, "content": _RAW_JSON},
                "responses": {
                    "200": {"description": "A JSON-RPC answer", "content": _RAW_JSON},
                    **_answers(None, 400, 413, 429),
                }
                | {"406": {"description": "Accept must take application/json."}},
            }
        },
        "/v1/confirmations": {
            "post": {
                "summary": "The chat UI's confirm button (the visitor's own proof); not a tool",
                body: {"required": True, "content": _json(m.ConfirmationRequest)},
                "responses": _answers(m.ConfirmationReply, 400, 403, 413, 429, 502, 503),
            }
        },
        "/v1/confirm/{token}": {
            "parameters": [_path("token", {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"})],
            "get": {
                "summary": "The confirmation page an MCP client opens for the person",
                "responses": {
                    "200": {"description": "The page", "content": {"text/html": {}}},
                    "404": {"description": "Not a valid link", "content": {"text/html": {}}},
                },
            },
            "post": {
                "summary": "The person's answer on the confirmation page",
                body: {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"answer": {"enum": ["confirm", "decline"]}},
                                "required": ["answer"],
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Recorded", "content": {"text/html": {}}},
                    "400": {"description": "No answer", "content": {"text/html": {}}},
                    "404": {"description": "Not a valid link", "content": {"text/html": {}}},
                },
            },
        },
        "/api/stripe/webhooks/{workspace_id}": {
            "post": {
                "summary": "A Stripe event, verified by its signature over the raw body",
                "parameters": [
                    _path("workspace_id", _ID_SCHEMA),
                    _header("Stripe-Signature", "Stripe's signature header.", required=True),
                ],
                body: {"required": True, "content": _RAW_JSON},
                "responses": _answers(m.StripeEventReceived, 400, 413, 503, ok_text="Stored"),
            }
        },
        "/api/whatsapp/webhook": {
            "get": {
                "summary": "The WhatsApp Cloud API's verification handshake",
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("hub.mode", "hub.verify_token", "hub.challenge")
                ],
                "responses": {
                    "200": {"description": "The challenge", "content": {"text/plain": {}}},
                    **_answers(None, 403),
                },
            },
            "post": {
                "summary": "WhatsApp Cloud API events, verified by their signature",
                "parameters": [
                    _header(
                        "X-Hub-Signature-256",
                        "sha256=<HMAC-SHA256 of the raw body with the app secret>.",
                        required=True,
                    )
                ],
                body: {"required": True, "content": _RAW_JSON},
                "responses": _answers(m.WhatsAppReceived, 400, 401, 413, 503, ok_text="Taken"),
            },
        },
        "/v1/access/check": {
            "post": {
                "summary": "Whether the verified visitor may see a piece of content",
                body: {"required": True, "content": _json(m.AccessCheckRequest)},
                "responses": _answers(m.AccessCheckReply, 400, 401, 413, 429, 502, 503),
            }
        },
        "/v1/admin/outcomes": {
            "get": {
                "summary": "The owner console's outcomes page",
                "security": [{"adminBearer": []}],
                "parameters": [
                    {"name": "workspace_id", "in": "query", "required": True, "schema": _ID_SCHEMA},
                    {
                        "name": "days",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 30},
                    },
                ],
                "responses": _answers(OutcomesReport, 400, 401, 403, 429, 503),
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": _answers(m.Liveness)}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the database, channels, draining",
                "responses": {
                    **_answers(m.Readiness, ok_text="Ready"),
                    "503": {"description": "Not ready", "content": _json(m.Readiness)},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OK", "content": _RAW_JSON}},
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in _REQUESTS),
        *((model, "serialization") for model in _ANSWERS),
    ]
    _, schemas = models_json_schema(modes, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AskVault edge",
            "version": "1",
            "description": "The HTTP API of the AskVault edge: chat turns, tools (JSON and "
            "MCP), confirmations, content access, webhooks, the owner's outcomes. Every 4xx "
            'is JSON {"error": {"code", "message", "fields"?}}.',
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "visitorToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "adminBearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def dumps() -> str:
    """The document as committed: sorted keys, two-space indents, a final newline."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(dumps(), end="")
