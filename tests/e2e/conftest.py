"""The whole system in-process for end-to-end tests: the Stripe emulator (seeded), the SMTP
sink, the WhatsApp emulator, identity, policy, the notifier (with its outbox workers), the
billing gateway and the edge, on free ports, one database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
import stripe
from aiohttp import web

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from edge import service as edge_service
from edge.settings import EdgeSettings
from identity.service import IdentityService
from identity.settings import IdentitySettings
from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing
from smtp_sink import app as smtp_sink_app
from stripe_emulator import app as stripe_app
from stripe_emulator import seed
from whatsapp_emulator import app as whatsapp_app
from whatsapp_emulator import signing

WORKSPACE = "ws_e2e"
HMAC_SECRET = b"e2e-hmac-secret-0123456789abcdef-0123456789"
WHATSAPP_APP_SECRET = "wa-app-secret"
WHATSAPP_VERIFY_TOKEN = "wa-verify"
WHATSAPP_TOKEN = "wa-access-token"
PHONE_NUMBER_ID = "1000000001"
AGENT_INBOX = "agents@support.e2e"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


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
    policy: policy_pb2_grpc.PolicyServiceStub
    billing: billing_pb2_grpc.BillingGatewayServiceStub
    identity: identity_pb2_grpc.IdentityServiceStub
    notifier_address: str
    sink: smtp_sink_app.RunningSink
    whatsapp: whatsapp_app.RunningEmulator
    stripe: stripe.StripeClient
    # host:port of identity, policy, billing_gateway and notifier (for an edge process).
    targets: dict[str, str]
    # The Stripe emulator's aiohttp runner (the benchmark times its request handler).
    emulator_runner: web.AppRunner

    async def turn(
        self, user: str | None, text: str, conversation: str = "c1", **visitor: str
    ) -> dict[str, Any]:
        """One chat turn as a verified visitor (user id), or anonymous (None)."""
        who: dict[str, str] = dict(visitor)
        if user is not None:
            domain = "example.in" if user == "dev" else "example.com"
            who = {"user_id": user, "email": f"{user}@{domain}", "user_hash": user_hash(user)}
            who.update(visitor)
        async with self.http.post(
            f"{self.edge_url}/v1/chat/turns",
            json={
                "workspace_id": WORKSPACE,
                "conversation_id": conversation,
                "visitor": who,
                "text": text,
            },
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

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
async def running_stack(database_url: str, **edge_values: Any) -> AsyncIterator[Stack]:
    """Everything running on one database (migrated at start), the e2e workspace provisioned;
    ``edge_values`` override the edge's settings (the benchmark uses it)."""
    emulator = await stripe_app.start()
    summary = seed.seed_demo(emulator.state)
    sink = await smtp_sink_app.start()
    whatsapp = await whatsapp_app.start(
        state=whatsapp_app.State(
            access_token=WHATSAPP_TOKEN, app_secret=WHATSAPP_APP_SECRET, status_delay_seconds=0.05
        )
    )
    stripe_http = stripe.AIOHTTPClient()
    stripe_client = stripe.StripeClient(
        seed.DEMO_API_KEY, base_addresses={"api": emulator.url}, http_client=stripe_http
    )
    identity_settings = testing.make_settings(
        IdentitySettings,
        database_url,
        secrets_encryption_keys=f"k1:{_key()}",
        assertion_signing_keys=f"a1:{_key()}",
    )
    async with testing.running(IdentityService(identity_settings), identity_settings) as identity:
        policy_settings = testing.make_settings(
            PolicySettings, database_url, identity_target=identity.address
        )
        async with testing.running(PolicyService(policy_settings), policy_settings) as policy:
            notifier_settings = testing.make_settings(
                NotifierSettings,
                database_url,
                smtp_host=sink.host,
                smtp_port=sink.smtp_port,
                smtp_timeout_seconds=2.0,
                whatsapp_base_url=whatsapp.url,
                whatsapp_access_token=WHATSAPP_TOKEN,
                whatsapp_phone_number_id=PHONE_NUMBER_ID,
                whatsapp_timeout_seconds=1.0,
                worker_count=1,
                poll_interval_seconds=0.05,
                max_attempts=3,
                retry_backoff_base_seconds=0.05,
                retry_backoff_cap_seconds=0.2,
                agent_inbox_address=AGENT_INBOX,
            )
            async with testing.running(
                NotifierService(notifier_settings), notifier_settings
            ) as notifier:
                billing_settings = testing.make_settings(
                    BillingGatewaySettings,
                    database_url,
                    secrets_encryption_keys=f"k1:{_key()}",
                    identity_target=identity.address,
                    policy_target=policy.address,
                    notifier_target=notifier.address,
                    stripe_api_base=emulator.url,
                    stripe_timeout_seconds=1.0,
                    stripe_max_network_retries=0,
                    webhook_poll_seconds=0.1,
                    scheduler_poll_seconds=0.2,
                )
                async with testing.running(
                    BillingGatewayService(billing_settings), billing_settings
                ) as billing:
                    edge_settings = testing.make_settings(
                        EdgeSettings,
                        database_url,
                        http_host="127.0.0.1",
                        http_port=0,
                        identity_target=identity.address,
                        policy_target=policy.address,
                        billing_target=billing.address,
                        notifier_target=notifier.address,
                        workspace_timezone="America/New_York",
                        whatsapp_app_secret=WHATSAPP_APP_SECRET,
                        whatsapp_verify_token=WHATSAPP_VERIFY_TOKEN,
                        whatsapp_workspaces=WORKSPACE,
                        secrets_encryption_keys=f"k1:{_key()}",
                        **{
                            "visitor_turns_per_minute": 1000,
                            "address_requests_per_minute": 10_000,
                            **edge_values,
                        },
                    )
                    running_edge = await edge_service.start(edge_settings)
                    try:
                        async with (
                            aiohttp.ClientSession() as http,
                            grpc.aio.insecure_channel(identity.address) as identity_channel,
                            grpc.aio.insecure_channel(policy.address) as policy_channel,
                            grpc.aio.insecure_channel(billing.address) as billing_channel,
                        ):
                            stack = Stack(
                                running_edge.url,
                                emulator.url,
                                summary,
                                http,
                                policy_pb2_grpc.PolicyServiceStub(policy_channel),
                                billing_pb2_grpc.BillingGatewayServiceStub(billing_channel),
                                identity_pb2_grpc.IdentityServiceStub(identity_channel),
                                notifier.address,
                                sink,
                                whatsapp,
                                stripe_client,
                                {
                                    "identity": identity.address,
                                    "policy": policy.address,
                                    "billing_gateway": billing.address,
                                    "notifier": notifier.address,
                                },
                                emulator.runner,
                            )
                            whatsapp.state.webhook_url = f"{running_edge.url}/api/whatsapp/webhook"
                            await _provision(stack, running_edge.url)
                            yield stack
                    finally:
                        await running_edge.stop(grace=1.0)
    await stripe_http.close_async()  # type: ignore[no-untyped-call]
    await whatsapp.close()
    await sink.close()
    await emulator.close()


async def _provision(stack: Stack, edge_url: str) -> None:
    admin = testing.admin_metadata("admin-e2e")
    await stack.identity.AddSecret(
        identity_pb2.AddSecretRequest(
            workspace_id=WORKSPACE, key_id="k1", secret=HMAC_SECRET, idempotency_key="e2e-secret"
        ),
        metadata=admin,
        timeout=5,
    )
    current = await stack.policy.GetBounds(
        policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=5
    )
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.defaults)
    bounds.workspace_id = WORKSPACE
    bounds.askvault_plan = policy_pb2.ASK_VAULT_PLAN_BUSINESS
    await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key="e2e-bounds"
        ),
        metadata=admin,
        timeout=5,
    )
    await stack.billing.ConnectAccount(
        billing_pb2.ConnectAccountRequest(
            workspace_id=WORKSPACE,
            secret_key=seed.DEMO_API_KEY,
            webhook_url=f"{edge_url}/api/stripe/webhooks/{WORKSPACE}",
            idempotency_key="e2e-connect",
        ),
        metadata=admin,
        timeout=10,
    )
