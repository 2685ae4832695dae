"""Talking to a running system (bench._processes) as the demo does: chat turns over HTTP as
a verified demo visitor, the Stripe emulator's API and request log, the admins' calls."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import grpc

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from bench._processes import System, admin_metadata, service_metadata


class TurnFailed(Exception):
    """A turn answered with an error, or not with what the scenario expects."""


class Client:
    """One HTTP session to the system's edge and Stripe emulator."""

    def __init__(self, system: System, http: aiohttp.ClientSession) -> None:
        self.system = system
        self.http = http
        self._stripe_key = str(system.demo.raw["stripe"]["secret_key"])

    async def turn(self, user: str, text: str, conversation: str) -> dict[str, Any]:
        status, _, body = await self.post_turn(user, text, conversation)
        if status != 200:
            raise TurnFailed(f"HTTP {status}: {str(body)[:200]}")
        return body

    async def post_turn(
        self, user: str, text: str, conversation: str
    ) -> tuple[int, str, dict[str, Any]]:
        """A chat turn's HTTP status, its Retry-After header ("" when none) and its JSON body
        (a body that is not JSON is returned as {"text": ...})."""
        visitor = next(v for v in self.system.demo.visitors if v["user_id"] == user)
        user_hash = hmac.new(self.system.demo.hmac_secret, user.encode(), hashlib.sha256)
        async with self.http.post(
            f"{self.system.url('edge')}/v1/chat/turns",
            json={
                "workspace_id": self.system.workspace_id,
                "conversation_id": conversation,
                "visitor": {
                    "user_id": user,
                    "email": visitor["email"],
                    "user_hash": user_hash.hexdigest(),
                },
                "text": text,
            },
        ) as response:
            retry_after = response.headers.get("Retry-After", "")
            try:
                body: dict[str, Any] = await response.json()
            except (aiohttp.ContentTypeError, ValueError):
                body = {"text": (await response.text())[:200]}
            return response.status, retry_after, body

    async def stripe(self, method: str, path: str, **form: str) -> Any:
        """A call to the Stripe emulator's API with the demo account's key."""
        async with self.http.request(
            method,
            f"{self.system.url('stripe_emulator')}{path}",
            params=form if method == "GET" else None,
            data=form if method != "GET" else None,
            headers={"Authorization": f"Bearer {self._stripe_key}"},
        ) as response:
            response.raise_for_status()
            return await response.json()

    async def stripe_requests(self) -> int:
        """API requests the emulator served for the demo account since the last clear."""
        async with self.http.get(
            f"{self.system.url('stripe_emulator')}/_emulator/requests",
            params={"api_key": self._stripe_key},
        ) as response:
            response.raise_for_status()
            return len((await response.json())["requests"])

    async def clear_stripe_requests(self) -> None:
        async with self.http.delete(
            f"{self.system.url('stripe_emulator')}/_emulator/requests"
        ) as response:
            response.raise_for_status()

    async def webhooks_enabled(self, enabled: bool) -> None:
        """Pauses (or resumes) the emulator's webhook deliveries."""
        async with self.http.post(
            f"{self.system.url('stripe_emulator')}/_emulator/webhooks/mode",
            json={"enabled": enabled},
        ) as response:
            response.raise_for_status()

    async def flush_webhooks(self) -> None:
        """Has the emulator deliver every pending webhook now."""
        async with self.http.post(
            f"{self.system.url('stripe_emulator')}/_emulator/webhooks/flush", json={"timeout": 30}
        ) as response:
            response.raise_for_status()

    async def customer(self, email: str) -> dict[str, Any]:
        found = await self.stripe("GET", "/v1/customers/search", query=f"email:'{email}'")
        customer: dict[str, Any] = found["data"][0]
        return customer

    async def charges(self, email: str, count: int, amount_minor: int) -> list[str]:
        """``count`` fresh charges on the customer's default card."""
        customer = await self.customer(email)
        method = customer["invoice_settings"]["default_payment_method"]
        if isinstance(method, dict):
            method = method["id"]
        made = []
        for _ in range(count):
            intent = await self.stripe(
                "POST",
                "/v1/payment_intents",
                amount=str(amount_minor),
                currency="usd",
                customer=customer["id"],
                payment_method=str(method),
                confirm="true",
            )
            made.append(str(intent["latest_charge"]))
        return made

    async def wait_mirror_warm(self, limit_seconds: float = 90.0) -> float:
        """Waits until the billing gateway's mirror backfill is done; seconds waited."""
        began = time.monotonic()
        async with grpc.aio.insecure_channel(self.system.grpc_target("billing_gateway")) as ch:
            stub = billing_pb2_grpc.BillingGatewayServiceStub(ch)
            while time.monotonic() - began < limit_seconds:
                status = await stub.GetMirrorStatus(
                    billing_pb2.GetMirrorStatusRequest(workspace_id=self.system.workspace_id),
                    metadata=admin_metadata("admin-bench"),
                    timeout=5,
                )
                if status.backfill_done:
                    return round(time.monotonic() - began, 1)
                await asyncio.sleep(0.5)
        raise RuntimeError(f"the mirror backfill was not done after {limit_seconds:.0f}s")

    async def raise_refund_cap(self, amount_minor: int) -> None:
        """A per-customer refund cap far above what the bench refunds (a loosening: one
        admin proposes, another approves)."""
        workspace = self.system.workspace_id
        async with grpc.aio.insecure_channel(self.system.grpc_target("policy")) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            current = await stub.GetBounds(
                policy_pb2.GetBoundsRequest(workspace_id=workspace),
                metadata=service_metadata("edge"),
                timeout=5,
            )
            bounds = policy_pb2.Bounds()
            bounds.CopyFrom(current.bounds)
            del bounds.refund_caps[:]
            bounds.refund_caps.append(common_pb2.Money(amount_minor=amount_minor, currency="usd"))
            proposed = await stub.ProposeBoundsChange(
                policy_pb2.ProposeBoundsChangeRequest(
                    workspace_id=workspace, bounds=bounds, idempotency_key="bench-cap"
                ),
                metadata=admin_metadata("admin-bench-a"),
                timeout=5,
            )
            if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
                await stub.ApproveBoundsChange(
                    policy_pb2.ApproveBoundsChangeRequest(
                        workspace_id=workspace,
                        change_id=proposed.change.change_id,
                        idempotency_key="bench-cap-approve",
                    ),
                    metadata=admin_metadata("admin-bench-b"),
                    timeout=5,
                )
