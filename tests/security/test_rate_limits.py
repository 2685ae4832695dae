"""Rate limits key only on what is proven (issue 13, item 6).

Before verification a request is limited per client address (the socket peer, or the
right-most X-Forwarded-For hop behind a configured trusted proxy); after verification per
verified contact and per Stripe customer. ``/mcp`` and ``/v1/tools`` are limited like chat.
An unverified visitor's billing turns open at most one escalation per conversation, and the
agent emails they cause are limited per workspace.

Each test runs the whole system (``tests/e2e/conftest.running_stack``) with small limits;
every client here reaches the edge from 127.0.0.1, which plays the Ingress where a test
configures it as a trusted proxy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg

from askvault.identity.v1 import identity_pb2
from askvault.policy.v1 import policy_pb2
from edge.http_middleware import RATE_LIMITED_RETRY_AFTER_SECONDS
from runtime import testing
from tests.e2e.conftest import AGENT_INBOX, WORKSPACE, Stack, eventually, running_stack, user_hash

# Turns and requests allowed per minute in these tests: small, so that a handful of requests
# reaches them, and every test finishes well inside the minute its budgets last.
SMALL = 3
PLENTY = 100_000


def _visitor(user: str, good: bool = True) -> dict[str, str]:
    return {
        "user_id": user,
        "email": f"{user}@example.com",
        "user_hash": user_hash(user) if good else "0" * 64,
    }


async def _turn(
    stack: Stack,
    visitor: dict[str, str],
    text: str,
    conversation: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    async with stack.http.post(
        f"{stack.edge_url}/v1/chat/turns",
        json={
            "workspace_id": WORKSPACE,
            "conversation_id": conversation,
            "visitor": visitor,
            "text": text,
        },
        headers=headers or {},
    ) as response:
        return response.status, await response.json()


async def _edge_rows(database_url: str, conversation: str) -> tuple[list[str], list[str]]:
    """The authors of a conversation's messages and the states of its proposals."""
    connection = await asyncpg.connect(database_url)
    try:
        messages = await connection.fetch(
            "SELECT author FROM edge.messages WHERE workspace_id = $1 AND conversation_id = $2"
            " ORDER BY sequence",
            WORKSPACE,
            conversation,
        )
        proposals = await connection.fetch(
            "SELECT state FROM edge.proposals WHERE workspace_id = $1 AND conversation_id = $2"
            " ORDER BY created_at",
            WORKSPACE,
            conversation,
        )
    finally:
        await connection.close()
    return [row["author"] for row in messages], [row["state"] for row in proposals]


async def _handoff_messages(database_url: str) -> list[dict[str, Any]]:
    """Every agent hand-off the notifier was asked to send."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT variables::text AS variables, recipient_email FROM notifier.messages"
            " WHERE workspace_id = $1 AND template = 'handoff'",
            WORKSPACE,
        )
    finally:
        await connection.close()
    return [dict(row) for row in rows]


def _unverified_escalations(
    escalations: list[policy_pb2.Escalation], conversation: str
) -> list[policy_pb2.Escalation]:
    return [
        escalation
        for escalation in escalations
        if escalation.reason == "IDENTITY_UNVERIFIED"
        and escalation.context.conversation_id == conversation
    ]


# ----- before verification: per client address only -----


async def test_bad_hashes_with_a_victims_user_id_do_not_limit_the_victim(
    database_url: str,
) -> None:
    async with running_stack(
        database_url,
        visitor_turns_per_minute=SMALL,
        address_requests_per_minute=PLENTY,
    ) as stack:
        # The attacker floods the edge with alice's user id and made-up hashes.
        for index in range(SMALL * 3):
            status, body = await _turn(stack, _visitor("alice", good=False), "hi", f"atk-{index}")
            assert status == 200, body
        # Alice herself, verified, is not locked out.
        status, body = await _turn(stack, _visitor("alice"), "what plan am I on?", "victim")
        assert status == 200, body
        assert "Growth plan" in body["reply"], body


async def test_an_untrusted_peer_cannot_spoof_x_forwarded_for(database_url: str) -> None:
    # The default trusts no proxy; here a proxy range the test's client is not in.
    async with running_stack(
        database_url,
        address_requests_per_minute=SMALL,
        trusted_proxies="10.0.0.0/8",
    ) as stack:
        statuses = []
        for index in range(SMALL + 2):
            forged = {"X-Forwarded-For": f"198.51.100.{index + 1}"}
            status, body = await _turn(stack, {}, "hi", f"spoof-{index}", headers=forged)
            statuses.append(status)
        assert statuses == [200] * SMALL + [429, 429], statuses
        assert body["error"]["code"] == "RATE_LIMITED", body


async def test_clients_behind_a_trusted_proxy_have_their_own_budgets(database_url: str) -> None:
    async with running_stack(
        database_url,
        address_requests_per_minute=SMALL,
        trusted_proxies="127.0.0.1/32, ::1/128",
    ) as stack:
        first = {"X-Forwarded-For": "203.0.113.5"}
        for index in range(SMALL):
            status, body = await _turn(stack, {}, "hi", f"a-{index}", headers=first)
            assert status == 200, body
        status, body = await _turn(stack, {}, "hi", "a-over", headers=first)
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
        # A client that puts a fresh address in front of its own still spends its own budget:
        # the proxy appends the real peer, and only the right-most untrusted hop counts.
        spoofing = {"X-Forwarded-For": "192.0.2.77, 203.0.113.5"}
        status, body = await _turn(stack, {}, "hi", "a-spoof", headers=spoofing)
        assert status == 429, body
        # Another client behind the same proxy (and a hop of the proxy chain) is not limited.
        second = {"X-Forwarded-For": "203.0.113.6, 127.0.0.1"}
        for index in range(SMALL):
            status, body = await _turn(stack, {}, "hi", f"b-{index}", headers=second)
            assert status == 200, body


# ----- /mcp and /v1/tools -----


def _mcp_headers(user: str) -> dict[str, str]:
    return {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
        "X-AskVault-Workspace": WORKSPACE,
        "X-AskVault-User-Id": user,
        "X-AskVault-User-Email": f"{user}@example.com",
        "X-AskVault-User-Hash": user_hash(user),
    }


def _mcp_call(index: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": index,
        "method": "tools/call",
        "params": {"name": "get_subscription", "arguments": {}},
    }


async def test_mcp_is_limited_per_client_address(database_url: str) -> None:
    async with running_stack(database_url, address_requests_per_minute=SMALL) as stack:
        statuses = []
        for index in range(SMALL + 1):
            async with stack.http.post(
                f"{stack.edge_url}/mcp", json=_mcp_call(index), headers=_mcp_headers("alice")
            ) as response:
                statuses.append(response.status)
                body = await response.json(content_type=None)
                retry_after = response.headers.get("Retry-After")
        assert statuses == [200] * SMALL + [429], statuses
        assert body["error"]["code"] == "RATE_LIMITED", body
        assert retry_after == str(RATE_LIMITED_RETRY_AFTER_SECONDS)


async def test_a_rate_limited_chat_turn_says_when_to_retry(database_url: str) -> None:
    """A 429 carries Retry-After: the budget's minute, after which it has surely started
    again (a client that retries at once only spends the next window sooner)."""
    async with running_stack(database_url, address_requests_per_minute=SMALL) as stack:
        answers = []
        for index in range(SMALL + 1):
            async with stack.http.post(
                f"{stack.edge_url}/v1/chat/turns",
                json={"workspace_id": WORKSPACE, "conversation_id": f"r-{index}", "text": "hi"},
            ) as response:
                body = await response.json()
                answers.append((response.status, response.headers.get("Retry-After")))
        assert answers[:SMALL] == [(200, None)] * SMALL, answers
        assert answers[SMALL] == (429, str(RATE_LIMITED_RETRY_AFTER_SECONDS)), answers
        assert body["error"]["code"] == "RATE_LIMITED", body


async def test_mcp_and_tools_are_limited_per_verified_contact(database_url: str) -> None:
    async with running_stack(database_url, visitor_turns_per_minute=SMALL) as stack:
        texts = []
        for index in range(SMALL):
            async with stack.http.post(
                f"{stack.edge_url}/mcp", json=_mcp_call(index), headers=_mcp_headers("alice")
            ) as response:
                assert response.status == 200
                texts.append(await response.text())
        assert all("Growth plan" in text for text in texts), texts
        # Alice's budget is spent: over MCP the tool answers an error, over JSON a 429.
        async with stack.http.post(
            f"{stack.edge_url}/mcp", json=_mcp_call(99), headers=_mcp_headers("alice")
        ) as response:
            limited = await response.json(content_type=None)
        assert limited["result"]["isError"] is True, limited
        assert limited["result"]["structuredContent"]["error"]["code"] == "RATE_LIMITED"
        status, body = await stack.tool("alice", "get_subscription", {})
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
        # Bob, another contact, still has his own budget.
        status, body = await stack.tool("bob", "get_subscription", {})
        assert status == 200, body


# ----- after verification: per contact and per customer -----


async def test_turns_are_limited_per_verified_contact(database_url: str) -> None:
    async with running_stack(database_url, visitor_turns_per_minute=SMALL) as stack:
        for _ in range(SMALL):
            status, body = await _turn(stack, _visitor("alice"), "what plan am I on?", "c-alice")
            assert status == 200, body
        before = await _edge_rows(database_url, "c-alice")
        status, body = await _turn(stack, _visitor("alice"), "refund my last charge", "c-alice")
        assert status == 429, body
        assert body["error"]["code"] == "RATE_LIMITED", body
        # The limited turn stored nothing, answered nothing and proposed nothing.
        assert await _edge_rows(database_url, "c-alice") == before
        status, body = await _turn(stack, _visitor("bob"), "what plan am I on?", "c-bob")
        assert status == 200, body


async def test_contacts_of_one_customer_share_its_budget(database_url: str) -> None:
    async with running_stack(
        database_url, visitor_turns_per_minute=PLENTY, customer_turns_per_minute=SMALL
    ) as stack:
        # A second login of alice's company, bound to the same Stripe customer.
        verified = await stack.identity.VerifyVisitor(
            identity_pb2.VerifyVisitorRequest(
                workspace_id=WORKSPACE,
                user_id="alice-colleague",
                email="alice-colleague@example.com",
                user_hash=user_hash("alice-colleague"),
            ),
            timeout=5,
        )
        await stack.identity.LinkCustomer(
            identity_pb2.LinkCustomerRequest(
                workspace_id=WORKSPACE,
                contact_id=verified.contact.contact_id,
                stripe_customer_id=stack.customer("alice@example.com")["customer"],
                idempotency_key="rate-limits-colleague",
            ),
            # Binding a contact to a named customer is an admin's act.
            metadata=testing.admin_metadata("admin-e2e"),
            timeout=5,
        )
        for index in range(SMALL):
            who = "alice" if index % 2 == 0 else "alice-colleague"
            status, body = await _turn(stack, _visitor(who), "what plan am I on?", f"cu-{who}")
            assert status == 200, body
            assert "Growth plan" in body["reply"], body
        status, body = await _turn(
            stack, _visitor("alice-colleague"), "what plan am I on?", "cu-alice-colleague"
        )
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED", body
        status, body = await _turn(stack, _visitor("bob"), "what plan am I on?", "cu-bob")
        assert status == 200, body


# ----- unverified hand-offs -----


async def test_repeated_unverified_billing_turns_open_one_escalation_and_one_email(
    database_url: str,
) -> None:
    async with running_stack(database_url) as stack:
        references = set()
        for _ in range(3):
            status, body = await _turn(stack, {}, "refund my last charge", "anon-1")
            assert status == 200 and body["escalated"] is True, body
            references.add(body["escalation_id"])
        assert len(references) == 1, references
        assert len(_unverified_escalations(await stack.escalations(), "anon-1")) == 1
        # Exactly one hand-off was queued, and it reaches the agents.
        assert len(await _handoff_messages(database_url)) == 1
        await eventually(lambda: stack.emails(AGENT_INBOX))

        # Once an agent closes it, the next unverified billing turn opens a new one.
        (reference,) = references
        await stack.policy.RejectEscalation(
            policy_pb2.RejectEscalationRequest(
                workspace_id=WORKSPACE,
                escalation_id=reference,
                note="not a customer",
                idempotency_key="rate-limits-reject",
            ),
            metadata=testing.admin_metadata("admin-e2e"),
            timeout=5,
        )
        status, body = await _turn(stack, {}, "refund my last charge", "anon-1")
        assert status == 200 and body["escalation_id"] not in ("", reference), body
        assert len(_unverified_escalations(await stack.escalations(), "anon-1")) == 2
        assert len(await _handoff_messages(database_url)) == 2


async def test_concurrent_unverified_billing_turns_open_one_escalation(database_url: str) -> None:
    async with running_stack(database_url) as stack:
        answers = await asyncio.gather(
            *(_turn(stack, {}, "refund my last charge", "anon-burst") for _ in range(6))
        )
        assert all(status == 200 and body["escalated"] for status, body in answers), answers
        assert len(_unverified_escalations(await stack.escalations(), "anon-burst")) == 1
        assert len(await _handoff_messages(database_url)) == 1


async def test_agent_emails_for_unverified_visitors_are_limited_per_workspace(
    database_url: str,
) -> None:
    async with running_stack(database_url, unverified_handoff_emails_per_hour=2) as stack:
        for index in range(4):
            status, body = await _turn(stack, {}, "refund my last charge", f"anon-w-{index}")
            assert status == 200 and body["escalated"] is True and body["escalation_id"], body
        escalations = await stack.escalations()
        for index in range(4):
            assert len(_unverified_escalations(escalations, f"anon-w-{index}")) == 1
        assert len(await _handoff_messages(database_url)) == 2
        # Verified visitors' hand-offs are not held back by the unverified ones.
        answer = await stack.turn("alice", "talk to a human", conversation="human")
        assert answer["escalated"] is True, answer
        assert len(await _handoff_messages(database_url)) == 3


async def test_the_edge_reads_x_forwarded_for_only_itself(database_url: str) -> None:
    """uvicorn's own proxy handling is off: with no trusted proxy, a forged header changes
    nothing (the same peer spends one budget), including uvicorn's default trust of
    127.0.0.1."""
    async with running_stack(database_url, address_requests_per_minute=SMALL) as stack:
        statuses = []
        async with aiohttp.ClientSession() as http:
            for index in range(SMALL + 1):
                async with http.post(
                    f"{stack.edge_url}/v1/tools/get_subscription",
                    json={"arguments": {}},
                    headers={"X-Forwarded-For": f"198.51.100.{index + 1}", "X-Real-IP": "1.2.3.4"},
                ) as response:
                    statuses.append(response.status)
        assert statuses[-1] == 429, statuses
