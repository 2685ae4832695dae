"""The whole system in-process for end-to-end tests: the Stripe emulator (seeded), the SMTP
sink, the WhatsApp emulator, identity, policy, the notifier (with its outbox workers), the
billing gateway and the edge, on free ports, one database."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import stripe
from aiohttp import web

from askvault.billing.v1 import billing_pb2_grpc
from askvault.identity.v1 import identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import testing
from runtime.server import RunningService
from smtp_sink import app as smtp_sink_app
from stripe_emulator import seed
from tests import system as in_process
from whatsapp_emulator import app as whatsapp_app
from whatsapp_emulator import signing

WORKSPACE = "ws_e2e"
HMAC_SECRET = b"e2e-hmac-secret-0123456789abcdef-0123456789"
# The workspace's visitor-token key: other material than the user_hash secret (issue 13).
TOKEN_SECRET = b"e2e-visitor-token-secret-fedcba9876543210-01234"
WHATSAPP_APP_SECRET = "wa-app-secret"
WHATSAPP_VERIFY_TOKEN = "wa-verify"
WHATSAPP_TOKEN = "wa-access-token"
PHONE_NUMBER_ID = in_process.PHONE_NUMBER_ID
AGENT_INBOX = "agents@support.e2e"


def user_hash(user_id: str) -> str:
    """What the workspace's backend computes for a visitor."""
    return hmac.new(HMAC_SECRET, user_id.encode(), hashlib.sha256).hexdigest()


@dataclass
class Stack:
    """Addresses and clients of the running system."""

    edge_url: str
    stripe_url: str
    summary: dict[str, Any]
    http: aiohttp.ClientSession
    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    billing: billing_pb2_grpc.BillingGatewayServiceAsyncStub
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    notifier_address: str
    sink: smtp_sink_app.RunningSink
    whatsapp: whatsapp_app.RunningEmulator
    stripe: stripe.StripeClient
    # host:port of identity, policy, billing_gateway and notifier (for an edge process).
    targets: dict[str, str]
    # The Stripe emulator's aiohttp runner (the benchmark times its request handler).
    emulator_runner: web.AppRunner
    # The identity server (a test stops it to see the edge answer an outage).
    identity_server: RunningService
    # Policy and the billing gateway (a test takes their places in flight to overload them).
    policy_server: RunningService
    billing_server: RunningService
    # The notifier's server (a test stops it to see the WhatsApp webhook ask for a retry).
    notifier_server: RunningService

    async def turn(
        self,
        user: str | None,
        text: str,
        conversation: str = "c1",
        *,
        http: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        **visitor: str,
    ) -> dict[str, Any]:
        """One chat turn as a verified visitor (user id), or anonymous (None); sent by
        ``http`` (the stack's session by default) with ``headers`` when given."""
        who: dict[str, str] = dict(visitor)
        if user is not None:
            domain = "example.in" if user == "dev" else "example.com"
            who = {"user_id": user, "email": f"{user}@{domain}", "user_hash": user_hash(user)}
            who.update(visitor)
        async with (http or self.http).post(
            f"{self.edge_url}/v1/chat/turns",
            json={
                "workspace_id": WORKSPACE,
                "conversation_id": conversation,
                "visitor": who,
                "text": text,
            },
            headers=headers,
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def post_turn(
        self, visitor: dict[str, str], text: str, conversation: str
    ) -> tuple[int, dict[str, Any]]:
        """A chat turn with any visitor object; the HTTP status and the JSON body."""
        async with self.http.post(
            f"{self.edge_url}/v1/chat/turns",
            json={
                "workspace_id": WORKSPACE,
                "conversation_id": conversation,
                "visitor": visitor,
                "text": text,
            },
        ) as response:
            body: dict[str, Any] = await response.json()
            return response.status, body

    async def tool(
        self, user: str, name: str, arguments: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """A tool call with the visitor's identity in the headers."""
        domain = "example.in" if user == "dev" else "example.com"
        headers = {
            "X-AskVault-Workspace": WORKSPACE,
            "X-AskVault-User-Id": user,
            "X-AskVault-User-Email": f"{user}@{domain}",
            "X-AskVault-User-Hash": user_hash(user),
            "X-AskVault-Conversation": "tools",
        }
        async with self.http.post(
            f"{self.edge_url}/v1/tools/{name}", json={"arguments": arguments}, headers=headers
        ) as response:
            return response.status, await response.json()

    async def fault(self, rule: dict[str, Any]) -> None:
        """Adds a fault rule to the Stripe emulator."""
        async with self.http.post(f"{self.stripe_url}/_emulator/faults", json=rule) as response:
            assert response.status < 300

    def customer(self, email: str) -> dict[str, Any]:
        """The seed summary of a demo customer."""
        found: dict[str, Any] = self.summary["customers"][email]
        return found

    async def flush_webhooks(self) -> list[dict[str, Any]]:
        """Has the emulator deliver every pending webhook now; the delivery log."""
        async with self.http.post(
            f"{self.stripe_url}/_emulator/webhooks/flush", json={"timeout": 10}
        ) as response:
            assert response.status == 200, await response.text()
        async with self.http.get(f"{self.stripe_url}/_emulator/webhooks") as response:
            log: dict[str, Any] = await response.json()
        deliveries: list[dict[str, Any]] = log.get("deliveries", log.get("webhooks", []))
        return deliveries

    async def emails(self, to: str = "") -> list[dict[str, Any]]:
        """The messages the SMTP sink received (to one address, or all)."""
        async with self.http.get(
            f"{self.sink.http_url}/messages", params={"to": to} if to else {}
        ) as response:
            body: dict[str, Any] = await response.json()
        messages: list[dict[str, Any]] = body["messages"]
        return messages

    async def whatsapp_messages(self, to: str = "") -> list[dict[str, Any]]:
        """The messages sent through the WhatsApp emulator."""
        async with self.http.get(
            f"{self.whatsapp.url}/_emulator/messages", params={"to": to} if to else {}
        ) as response:
            body: dict[str, Any] = await response.json()
        messages: list[dict[str, Any]] = body["messages"]
        return messages

    async def post_whatsapp(
        self, body: dict[str, Any], signature: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A WhatsApp webhook POST to the edge, signed with the app secret unless given."""
        raw = json.dumps(body).encode()
        header = signing.sign(raw, WHATSAPP_APP_SECRET) if signature is None else signature
        async with self.http.post(
            f"{self.edge_url}/api/whatsapp/webhook",
            data=raw,
            headers={"Content-Type": "application/json", signing.HEADER: header},
        ) as response:
            return response.status, await response.json()

    async def refunds(self) -> list[dict[str, Any]]:
        """Every refund in the demo Stripe account (through the SDK)."""
        found = await self.stripe.v1.refunds.list_async({"limit": 100})
        return [refund.to_dict() for refund in found.data]

    async def escalations(self) -> list[policy_pb2.Escalation]:
        """The workspace's escalations, as an admin sees them."""
        answer = await self.policy.ListEscalations(
            policy_pb2.ListEscalationsRequest(workspace_id=WORKSPACE),
            metadata=testing.admin_metadata("admin-e2e"),
            timeout=5,
        )
        return list(answer.escalations)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Polls ``check`` until it returns something truthy; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {check}")
        await asyncio.sleep(interval)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """Everything running, the e2e workspace provisioned."""
    async with running_stack(database_url) as running:
        yield running


@asynccontextmanager
async def running_stack(
    database_url: str, health_probe_interval_seconds: float = 0.2, **edge_values: Any
) -> AsyncIterator[Stack]:
    """Everything running on one database (migrated at start), the e2e workspace provisioned;
    ``edge_values`` override the edge's settings (the benchmark uses it)."""
    secrets = in_process.Secrets(
        whatsapp_app_secret=WHATSAPP_APP_SECRET,
        whatsapp_verify_token=WHATSAPP_VERIFY_TOKEN,
        whatsapp_token=WHATSAPP_TOKEN,
    )
    async with in_process.running(
        database_url,
        secrets,
        whatsapp_workspaces=WORKSPACE,
        agent_inbox=AGENT_INBOX,
        edge_values=edge_values,
        health_probe_interval_seconds=health_probe_interval_seconds,
    ) as system:
        summary = seed.seed_demo(system.emulator.state)
        await in_process.provision_workspace(
            system,
            WORKSPACE,
            hmac_secret=HMAC_SECRET,
            token_secret=TOKEN_SECRET,
            stripe_key=seed.DEMO_API_KEY,
            admin=testing.admin_metadata("admin-e2e"),
            key_prefix="e2e",
        )
        yield Stack(
            system.edge_url,
            system.emulator.url,
            summary,
            system.http,
            system.policy,
            system.billing,
            system.identity,
            system.notifier_server.address,
            system.sink,
            system.whatsapp,
            system.stripe_client(seed.DEMO_API_KEY),
            {
                "identity": system.identity_server.address,
                "policy": system.policy_server.address,
                "billing_gateway": system.billing_server.address,
                "notifier": system.notifier_server.address,
            },
            system.emulator.runner,
            system.identity_server,
            system.policy_server,
            system.billing_server,
            system.notifier_server,
        )
