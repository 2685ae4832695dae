"""Every HTTP endpoint of the edge (chat turns, tools, MCP, the Stripe and WhatsApp webhooks)
answers random shapes, types, sizes, encodings and headers with a 2xx or a 4xx carrying a
JSON error body, never a 5xx; a refused request changes no table; nothing moves money."""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from tests.security import strategies
from tests.security.conftest import (
    FUZZ_EXAMPLES,
    WHATSAPP_APP_SECRET,
    WORKSPACE_A,
    WORKSPACE_B,
    System,
    user_hash,
)
from whatsapp_emulator import signing

# One test covers every endpoint, so it gets more examples than one RPC does.
FUZZ_HTTP = FUZZ_EXAMPLES * 5

ROUTES = [
    ("POST", "/v1/chat/turns"),
    ("POST", "/v1/tools/get_subscription"),
    ("POST", "/v1/tools/request_refund"),
    ("POST", "/v1/tools/no_such_tool"),
    ("POST", "/mcp"),
    ("POST", f"/api/stripe/webhooks/{WORKSPACE_A}"),
    ("POST", "/api/stripe/webhooks/ws%00x"),
    ("POST", "/api/whatsapp/webhook"),
    ("GET", "/api/whatsapp/webhook"),
    ("GET", "/v1/tools"),
    ("PUT", "/v1/chat/turns"),
]
HEADER_NAMES = [
    "X-AskVault-Workspace",
    "X-AskVault-User-Id",
    "X-AskVault-User-Email",
    "X-AskVault-User-Hash",
    "X-AskVault-Conversation",
    "Authorization",
    "Stripe-Signature",
    "X-Hub-Signature-256",
    "Accept",
    "MCP-Protocol-Version",
    "Mcp-Session-Id",
]


def _chat_bodies() -> st.SearchStrategy[Any]:
    """Chat turns close to valid (so they reach the engine) and far from it."""
    visitor = st.fixed_dictionaries(
        {},
        optional={
            "user_id": st.one_of(st.sampled_from(["alice", "bob"]), strategies.JSON_VALUES),
            "email": st.one_of(st.just("alice@example.com"), strategies.JSON_VALUES),
            "user_hash": st.one_of(st.just(user_hash("alice")), strategies.JSON_VALUES),
            "token": strategies.JSON_VALUES,
        },
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "workspace_id": st.one_of(
                st.sampled_from([WORKSPACE_A, WORKSPACE_B]), strategies.JSON_VALUES
            ),
            "conversation_id": st.one_of(st.uuids().map(str), strategies.JSON_VALUES),
            "visitor": st.one_of(visitor, strategies.JSON_VALUES),
            "text": st.one_of(
                strategies.hostile_text(),
                st.sampled_from(["refund $5000", "yes", "cancel my subscription", "x" * 2001]),
                strategies.JSON_VALUES,
            ),
        },
    )


def _mcp_bodies() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0", 2])},
        optional={
            "id": strategies.JSON_VALUES,
            "method": st.one_of(
                st.sampled_from(["initialize", "tools/list", "tools/call", "resources/list"]),
                strategies.hostile_text(),
            ),
            "params": st.one_of(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["request_refund", "get_subscription", "nope"]),
                        "arguments": strategies.JSON_VALUES,
                    }
                ),
                strategies.JSON_VALUES,
            ),
        },
    )


BODIES = st.one_of(
    _chat_bodies().map(strategies.json_bytes),
    _mcp_bodies().map(strategies.json_bytes),
    st.fixed_dictionaries({"arguments": strategies.JSON_VALUES}).map(strategies.json_bytes),
    strategies.JSON_VALUES.map(strategies.json_bytes),
    strategies.RAW_BODIES,
    st.just(b'{"text": "' + b"a" * 70_000 + b'"}'),
)


# The MCP SDK's transport refusals that are not JSON (a wrong Content-Type, no Accept).
MCP_PLAIN_REFUSALS = {(400, "Invalid Content-Type header"), (406, "")}


def _is_error_body(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    # Our handlers: {"error": {"code", "message"}}; the MCP SDK: JSON-RPC {"error": {...}}.
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


@pytest.fixture(scope="module")
async def money(system: System) -> tuple[list[dict[str, Any]], list[Any]]:
    """Stripe's refunds and subscriptions before any fuzzing."""
    return await system.refunds(), await system.subscriptions()


@hypothesis.settings(hypothesis.settings.get_profile("security"), max_examples=FUZZ_HTTP)
@hypothesis.given(
    route=st.sampled_from(ROUTES),
    body=BODIES,
    content_type=strategies.CONTENT_TYPES,
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), strategies.HEADER_VALUES, max_size=5),
    identified=st.booleans(),
)
async def test_every_endpoint_answers_hostile_requests_without_a_5xx(
    system: System,
    money: Any,
    route: tuple[str, str],
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    identified: bool,
) -> None:
    method, path = route
    sent: dict[str, str] = {}
    if identified:
        sent.update(system.visitor_headers("alice"))
        sent["Accept"] = "application/json, text/event-stream"
    sent.update(headers)
    if content_type:
        sent["Content-Type"] = content_type
    before = await system.snapshot()
    async with system.http.request(
        method,
        f"{system.edge_url}{path}",
        data=body if method != "GET" else None,
        headers={k: v.encode("latin-1").decode("latin-1") for k, v in sent.items()},
        skip_auto_headers=["Content-Type"],
    ) as response:
        status = response.status
        text = await response.text(errors="replace")
    assert status < 500, (status, text[:500], method, path, sent, body[:300])
    if status >= 400:
        # Known: the MCP SDK's own refusals (transport checks) are plain text; see
        # test_mcp_transport_refusals_carry_a_json_error_body.
        if path != "/mcp" or (status, text) not in MCP_PLAIN_REFUSALS:
            assert _is_error_body(text), (status, text[:500], method, path)
        assert await system.snapshot() == before, (status, text[:300], method, path)


async def test_http_fuzzing_moved_no_money(system: System, money: Any) -> None:
    """Runs after the fuzzing (file order): Stripe is as it was before it."""
    refunds, subscriptions = money
    assert await system.refunds() == refunds
    assert await system.subscriptions() == subscriptions


async def test_mcp_transport_refusals_carry_a_json_error_body(system: System) -> None:
    async with system.http.post(
        f"{system.edge_url}/mcp",
        data=b"{}",
        headers={"Content-Type": "text/plain", "Accept": "application/json, text/event-stream"},
    ) as response:
        assert response.status == 400
        assert _is_error_body(await response.text())
    async with system.http.post(
        f"{system.edge_url}/mcp", data=b"{}", headers={"Content-Type": "application/json"}
    ) as response:
        # 406 for the missing Accept, or 400 when the SDK first refuses the empty message.
        assert response.status in (400, 406)
        assert _is_error_body(await response.text())


# JSON nested deeper than Python's recursion limit, small enough to pass the body size limit.
DEEP_JSON = b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"


@pytest.mark.parametrize(
    "path", ["/v1/chat/turns", "/v1/tools/get_subscription", "/api/whatsapp/webhook"]
)
async def test_json_nested_too_deep_is_a_400_not_a_500(system: System, path: str) -> None:
    # Found by the fuzzer: the parser's RecursionError escaped as a 500.
    headers = {"Content-Type": "application/json", **system.visitor_headers("alice")}
    if path == "/api/whatsapp/webhook":
        headers[signing.HEADER] = signing.sign(DEEP_JSON, WHATSAPP_APP_SECRET)
    before = await system.snapshot()
    async with system.http.post(
        f"{system.edge_url}{path}", data=DEEP_JSON, headers=headers
    ) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["code"] == "INVALID_JSON"
    assert await system.snapshot() == before
