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

# Events per page of the replayer's walks (Stripe's largest page).
PAGE_SIZE = 100

# How far behind the newest event seen a walk goes on looking. An event can be listed behind
# events seen before: Stripe does not order the events of one second strictly, and an event
# dated in the past (a subscription ended at its `cancel_at`, recorded when Stripe got to it)
# lands behind newer ones. Stopping at the first event seen would never see those.
LOOKBACK_SECONDS = 10


class PageFailed(Exception):
    """Stripe did not answer a page of events (a fault): the walk is tried again later."""


class PagingGap(Exception):
    """A page of events that cannot be walked on from (``has_more`` without events): events
    would be skipped without notice."""


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
    # Pages of the event list that could not be walked on from (each one a difference).
    gaps: list[str] = field(default_factory=list)
    # The newest `created` of a finished walk: the next walk goes LOOKBACK_SECONDS behind it.
    newest_created: int | None = None

    async def _page(self, starting_after: str, created_from: int | None) -> dict[str, Any]:
        """One page of the account's events (newest first, made at ``created_from`` or
        later); PageFailed when Stripe did not answer it (a fault: the walk is tried again),
        PagingGap when it answered with a page that cannot be walked on from."""
        params = {
            "limit": str(PAGE_SIZE),
            **({"starting_after": starting_after} if starting_after else {}),
            **({"created[gte]": str(created_from)} if created_from is not None else {}),
        }
        async with self.http.get(
            f"{self.stack.url('stripe_emulator')}/v1/events",
            params=params,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            if response.status != 200:
                raise PageFailed(
                    f"events page after {starting_after or 'the start'}: HTTP {response.status}"
                )
            page: dict[str, Any] = await response.json()
        return self._checked(page, starting_after)

    def _checked(self, page: dict[str, Any], starting_after: str) -> dict[str, Any]:
        """The page, unless it cannot be walked on from (PagingGap)."""
        data = page.get("data")
        if not isinstance(data, list) or (page.get("has_more") and not data):
            raise PagingGap(
                f"events page after {starting_after or 'the start'} says has_more "
                f"with {len(data) if isinstance(data, list) else 'no'} events"
            )
        return page

    async def _walk(self, *, created_from: int | None) -> list[dict[str, Any]]:
        """Events newest first, page by page, following ``has_more`` and ``starting_after``
        to the end (or to the first event made before ``created_from``)."""
        found: list[dict[str, Any]] = []
        starting_after = ""
        while True:
            page = await self._page(starting_after, created_from)
            for event in page["data"]:
                if created_from is not None and int(event["created"]) < created_from:
                    return found
                found.append(event)
            if not page.get("has_more"):
                return found
            starting_after = str(page["data"][-1]["id"])

    async def poll(self) -> None:
        """Adds the events not seen yet. The list is newest first, and a walk stops
        LOOKBACK_SECONDS behind the newest event of the last finished walk: so the events of
        a walk are taken only once it got there or to the end. A walk cut by a failed page (a
        Stripe fault) takes nothing, and the next walk starts again from the newest (taking
        part of it would leave older pages behind events already seen, never walked again)."""
        created_from = (
            None if self.newest_created is None else self.newest_created - LOOKBACK_SECONDS
        )
        walked = await self._walk(created_from=created_from)
        for event in walked:
            if event["id"] not in self.seen:
                self.seen.add(event["id"])
                self.pending[event["id"]] = json.dumps(event, indent=2)
        if walked:
            newest = max(int(event["created"]) for event in walked)
            self.newest_created = max(newest, self.newest_created or newest)

    async def every_event(self) -> list[dict[str, Any]]:
        """Every event of the account, oldest first, walked to the end (for the
        reconciliation: what the replayer saw is compared with it)."""
        return list(reversed(await self._walk(created_from=None)))

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
            await self._round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def finish(self, limit_seconds: float) -> None:
        """Replays until every event was taken once (or the limit passes)."""
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            if await self._round() and not self.pending:
                return
            await asyncio.sleep(0.5)

    async def poll_round(self) -> bool:
        """One poll (no delivery); whether it walked to its end (tests of the paging)."""
        return await self._round(deliver=False)

    async def _round(self, *, deliver: bool = True) -> bool:
        """One poll and delivery; whether the poll walked to its end. A gap in the paging is
        kept (the reconciliation reports it), never passed over in silence."""
        try:
            await self.poll()
        except PagingGap as gap:
            self.gaps.append(str(gap))
            return False
        except (PageFailed, aiohttp.ClientError, TimeoutError, OSError):
            return False
        if deliver:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                await self.deliver()
        return True
