"""The third delivery of every webhook. The emulator delivers each event twice, batches newest
first (its duplicates and out_of_order modes); this replayer delivers each event once more,
later and shuffled, signed with the workspace's signing secret as Stripe signs it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from chaos.stack import ChaosStack
from runtime.secretbox import SecretBox


async def signing_secret(stack: ChaosStack) -> str:
    """The endpoint's signing secret, as the billing gateway stored it (sealed with the
    stack's SECRETS_ENCRYPTION_KEYS, which the harness gave it)."""
    connection = await asyncpg.connect(stack.database_url)
    try:
        row = await connection.fetchrow(
            "SELECT secret_id, ciphertext FROM billing_gateway.webhook_secrets"
            " WHERE workspace_id = $1 AND (retired_at IS NULL OR retired_at > now())"
            " ORDER BY created_at DESC LIMIT 1",
            stack.workspace_id,
        )
    finally:
        await connection.close()
    assert row is not None, "the billing gateway has no webhook signing secret"
    box = SecretBox(stack.keys["SECRETS_ENCRYPTION_KEYS"])
    bound_to = f"{stack.workspace_id}/webhook/{row['secret_id']}"
    return box.open(bytes(row["ciphertext"]), bound_to).decode()


@dataclass
class Replayer:
    """Lists the account's events and posts each one to the edge once more."""

    stack: ChaosStack
    http: aiohttp.ClientSession
    secret: str
    api_key: str
    seen: set[str] = field(default_factory=set)
    pending: dict[str, str] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    # (seconds, HTTP status or None) of every POST to the edge.
    posts: list[tuple[float, int | None]] = field(default_factory=list)
    shuffle: random.Random = field(default_factory=lambda: random.Random(9))

    async def poll(self) -> None:
        """Adds events not seen yet (the list is newest first: stop at a seen one)."""
        starting_after = ""
        while True:
            params = {
                "limit": "100",
                **({"starting_after": starting_after} if starting_after else {}),
            }
            async with self.http.get(
                f"{self.stack.url('stripe_emulator')}/v1/events",
                params=params,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if response.status != 200:
                    return  # a Stripe fault: next time
                page: dict[str, Any] = await response.json()
            for event in page["data"]:
                if event["id"] in self.seen:
                    return
                self.seen.add(event["id"])
                self.pending[event["id"]] = json.dumps(event, indent=2)
            if not page.get("has_more") or not page["data"]:
                return
            starting_after = page["data"][-1]["id"]

    async def deliver(self) -> None:
        """Posts every pending event, shuffled; keeps those the edge did not take."""
        batch = list(self.pending.items())
        self.shuffle.shuffle(batch)
        for event_id, payload in batch:
            timestamp = int(time.time())
            digest = hmac.new(
                self.secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256
            ).hexdigest()
            began = time.monotonic()
            status: int | None = None
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self.http.post(
                    f"{self.stack.url('edge')}/api/stripe/webhooks/{self.stack.workspace_id}",
                    data=payload.encode(),
                    headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "Stripe-Signature": f"t={timestamp},v1={digest}",
                    },
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as response:
                    status = response.status
                    await response.read()
            self.posts.append((time.monotonic() - began, status))
            if status is not None and 200 <= status < 300:
                self.pending.pop(event_id, None)
                self.delivered.add(event_id)

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Replays what is new every ``interval`` seconds until stopped."""
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                await self.poll()
                await self.deliver()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def finish(self, limit_seconds: float) -> None:
        """Replays until every event was taken once (or the limit passes)."""
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                await self.poll()
                await self.deliver()
                if not self.pending:
                    return
            await asyncio.sleep(0.5)
