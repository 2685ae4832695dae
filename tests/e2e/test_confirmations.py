"""Confirmation only from the person: no sequence of tool or MCP calls made by a model alone
moves money or charges a card. A tool quotes; the person confirms in their own chat, with the
chat UI's confirm button (their own proof), or on the confirmation page their MCP client
opens for them; what runs is exactly the quoted terms."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import URL_ELICITATION_REQUIRED, ElicitRequestParams, ElicitResult

from askvault.policy.v1 import policy_pb2
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack, user_hash


def _visitor(user: str) -> dict[str, str]:
    return {"user_id": user, "user_hash": user_hash(user)}


def _headers(user: str) -> dict[str, str]:
    return {
        "X-AskVault-Workspace": WORKSPACE,
        "X-AskVault-User-Id": user,
        "X-AskVault-User-Email": f"{user}@example.com",
        "X-AskVault-User-Hash": user_hash(user),
        "X-AskVault-Conversation": "mcp",
    }


async def _confirm(
    stack: Stack, visitor: dict[str, str], body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(
        f"{stack.edge_url}/v1/confirmations",
        json={"workspace_id": WORKSPACE, "visitor": visitor, **body},
    ) as response:
        answer: dict[str, Any] = await response.json()
        return response.status, answer


async def _allowed(stack: Stack) -> list[policy_pb2.AuditEvent]:
    """The audit chain's ALLOW decisions."""
    answer = await stack.policy.ListAuditEvents(
        policy_pb2.ListAuditEventsRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    return [e for e in answer.events if e.kind == "decision" and e.outcome.startswith("ALLOW")]


async def test_a_model_calling_tools_alone_never_moves_money(stack: Stack) -> None:
    charge = stack.customer("alice@example.com")["charges"][-1]
    for _ in range(3):
        status, body = await stack.tool("alice", "request_refund", {"charge_id": charge})
        assert status == 200, body
        assert body["status"] == "needs_confirmation", body
        quote = body["data"]["quote"]
        assert quote["terms_hash"] and quote["quote_id"] and "$49" in quote["summary"], quote
        assert "confirmation_id" not in body, body
    # The argument that used to confirm is refused with the reason.
    status, body = await stack.tool(
        "alice", "request_refund", {"charge_id": charge, "confirmation_id": quote["quote_id"]}
    )
    assert status == 400, body
    assert "cannot confirm" in body["error"]["fields"]["confirmation_id"], body
    # Every other money tool only quotes too.
    for name, arguments in (
        ("change_plan", {"plan": "business"}),
        ("cancel_subscription", {}),
        ("pause_subscription", {}),
    ):
        status, body = await stack.tool("alice", name, arguments)
        assert body["status"] in ("needs_confirmation", "denied"), (name, body)
    assert await stack.refunds() == []
    sub = await stack.turn("alice", "what plan am I on?", conversation="check")
    assert "Growth plan" in sub["reply"] and "cancel" not in sub["reply"].lower(), sub


async def test_retry_payment_needs_the_persons_confirmation(stack: Stack) -> None:
    invoice_id = stack.customer("carol@example.com")["invoices"][-1]
    before = await stack.stripe.v1.invoices.retrieve_async(invoice_id)
    status, body = await stack.tool("carol", "retry_payment", {})
    assert status == 200 and body["status"] == "needs_confirmation", body
    asked = await stack.turn("carol", "retry my payment", conversation="retry")
    assert asked["actions"] and "Shall I go ahead?" in asked["reply"], asked
    after = await stack.stripe.v1.invoices.retrieve_async(invoice_id)
    assert after["attempt_count"] == before["attempt_count"], (before, after)
    # The person's "yes" charges the card (it declines again: the seed's card fails).
    done = await stack.turn("carol", "yes", conversation="retry")
    assert "declined again" in done["reply"], done
    retried = await stack.turn("carol", "yes", conversation="retry")
    assert "nothing waiting" in retried["reply"], retried
    attempted = await stack.stripe.v1.invoices.retrieve_async(invoice_id)
    assert attempted["attempt_count"] == before["attempt_count"] + 1, attempted


async def test_the_confirm_endpoint_takes_only_the_persons_own_proof(stack: Stack) -> None:
    charge = stack.customer("alice@example.com")["charges"][-1]
    status, body = await stack.tool("alice", "request_refund", {"charge_id": charge})
    quote = body["data"]["quote"]
    answer = {
        "conversation_id": body["data"]["conversation_id"],
        "quote_id": quote["quote_id"],
        "terms_hash": quote["terms_hash"],
    }
    # No proof, a forged proof, another visitor's proof, altered terms: nothing happens.
    status, refused = await _confirm(stack, {"user_id": "alice"}, answer)
    assert status == 400, refused
    status, refused = await _confirm(stack, {"user_id": "alice", "user_hash": "0" * 64}, answer)
    assert status == 403, refused
    status, refused = await _confirm(stack, _visitor("bob"), answer)
    assert status == 403, refused
    status, refused = await _confirm(stack, _visitor("alice"), {**answer, "terms_hash": "f" * 64})
    assert status == 200 and refused["status"] == "nothing_pending", refused
    assert await stack.refunds() == []
    # The person's own confirmation runs exactly the quote, once.
    status, done = await _confirm(stack, _visitor("alice"), answer)
    assert status == 200 and "refunded $49 " in done["reply"], done
    status, again = await _confirm(stack, _visitor("alice"), answer)
    assert again["status"] == "nothing_pending", again
    refunds = await stack.refunds()
    assert [r["amount"] for r in refunds] == [4900], refunds
    (entry,) = await _allowed(stack)
    assert entry.confirmation.quote.terms_hash == quote["terms_hash"], entry
    assert entry.confirmation.quote.summary == quote["summary"], entry
    assert entry.confirmation.channel == policy_pb2.CONFIRMATION_CHANNEL_CONFIRM_ENDPOINT


class _Person:
    """The person behind an MCP client that supports URL elicitation: the client hands them
    the confirmation page's address; the model never sees it."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def elicit(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        url = getattr(params, "url", "")
        self.urls.append(url)
        return ElicitResult(action="accept")


def _elicitation_url(error: MCPError) -> str:
    data: dict[str, Any] = error.error.data or {}
    (elicitation,) = data["elicitations"]
    url: str = elicitation["url"]
    assert re.search(r"/v1/confirm/[A-Za-z0-9_-]{43}$", url), url
    return url


async def test_mcp_money_tools_run_only_after_the_person_confirms_on_the_page(
    stack: Stack,
) -> None:
    person = _Person()
    charge = stack.customer("alice@example.com")["charges"][-1]
    async with (
        httpx2.AsyncClient(headers=_headers("alice"), timeout=30) as http,
        Client(
            streamable_http_client(f"{stack.edge_url}/mcp", http_client=http),
            elicitation_callback=person.elicit,
        ) as client,
    ):
        # A preview changes nothing and asks no one.
        preview = await client.call_tool("preview_plan_change", {"plan": "business"})
        assert "Business" in str(preview.content), preview
        # The model calls, and calls again: each call only asks for the person.
        for _ in range(2):
            with pytest.raises(MCPError) as raised:
                await client.call_tool("request_refund", {"charge_id": charge})
            assert raised.value.error.code == URL_ELICITATION_REQUIRED, raised.value
        url = _elicitation_url(raised.value)
        assert await stack.refunds() == []

        # The person opens the page, sees the terms, confirms.
        async with stack.http.get(url) as page:
            text = await page.text()
            assert page.status == 200, text
            assert "$49" in text and "Confirm" in text
            assert page.headers["X-Frame-Options"] == "DENY"
        async with stack.http.post(url, data={"answer": "confirm"}) as confirmed:
            assert confirmed.status == 200, await confirmed.text()
        assert await stack.refunds() == []  # the page itself runs nothing

        # A preview after the person confirmed runs nothing either.
        await client.call_tool("preview_plan_change", {"plan": "business"})
        assert await stack.refunds() == []
        # The client retries: the confirmed quote runs, once; the model learns the outcome.
        result = await client.call_tool("request_refund", {"charge_id": charge})
        assert "refunded $49 " in str(result.content), result
        again = await client.call_tool("request_refund", {"charge_id": charge})
        assert "refunded" not in str(again.content) or "already" in str(again.content)
    refunds = await stack.refunds()
    assert [r["amount"] for r in refunds] == [4900], refunds
    allowed = await _allowed(stack)
    assert [e.confirmation.channel for e in allowed] == [
        policy_pb2.CONFIRMATION_CHANNEL_MCP_ELICITATION
    ]
    # A used page cannot confirm again.
    async with stack.http.post(url, data={"answer": "confirm"}) as reused:
        assert reused.status == 404


async def test_an_mcp_client_without_elicitation_gets_a_quote_and_moves_nothing(
    stack: Stack,
) -> None:
    charge = stack.customer("alice@example.com")["charges"][-1]
    async with (
        httpx2.AsyncClient(headers=_headers("alice"), timeout=30) as http,
        Client(streamable_http_client(f"{stack.edge_url}/mcp", http_client=http)) as client,
    ):
        for _ in range(3):
            result = await client.call_tool("request_refund", {"charge_id": charge})
            structured = result.structured_content or {}
            assert structured.get("status") == "needs_confirmation", result
            assert structured["data"]["quote"]["terms_hash"], structured
    assert await stack.refunds() == []
