"""Webhook delivery: signed POSTs to registered endpoints, retried, optionally duplicated
or reordered for tests, with a flush that waits until nothing is pending."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from stripe_emulator.state import Account, State

Json = dict[str, Any]

log = logging.getLogger(__name__)

# Seconds between attempts of one delivery (Stripe spreads these over three days).
RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
DELIVERY_TIMEOUT_SECONDS = 5.0
# How long a batch is held before delivery when out-of-order mode reverses batches.
OUT_OF_ORDER_WINDOW_SECONDS = 0.05
# Seconds each step of a stop may take (the delivery task, the HTTP session).
STOP_SECONDS = 5.0


def sign(payload: str, secret: str, timestamp: int) -> str:
    """Stripe's scheme: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


@dataclass
class Delivery:
    account_id: str
    endpoint_id: str
    event_id: str
    attempts: int = 0
    due: float = 0.0


@dataclass
class DeliveryMode:
    enabled: bool = True
    duplicates: bool = False
    out_of_order: bool = False


@dataclass
class Dispatcher:
    state: State
    mode: DeliveryMode = field(default_factory=DeliveryMode)
    pending: list[Delivery] = field(default_factory=list)
    log_entries: list[Json] = field(default_factory=list)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.state.event_listeners.append(self.on_event)

    # wiring

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS)
        )
        self._task = asyncio.create_task(self._run(), name="stripe-emulator-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # Bounded: a delivery stuck in a peer that never answers must not hang the stop.
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            self._task = None
        if self._session is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_SECONDS):
                    await self._session.close()
            self._session = None
        if self.on_event in self.state.event_listeners:
            self.state.event_listeners.remove(self.on_event)

    def reset(self) -> None:
        self.pending.clear()
        self.log_entries.clear()
        self.mode = DeliveryMode()
        self._update_idle()

    def on_event(self, account: Account, event: Json) -> None:
        if not self.mode.enabled:
            return
        copies = 2 if self.mode.duplicates else 1
        for endpoint in account.all("webhook_endpoint"):
            if endpoint["status"] != "enabled":
                continue
            wanted = endpoint["enabled_events"]
            if "*" not in wanted and event["type"] not in wanted:
                continue
            event["pending_webhooks"] = int(event["pending_webhooks"]) + 1
            for _ in range(copies):
                self.pending.append(Delivery(account.id, str(endpoint["id"]), str(event["id"])))
        self._update_idle()
        self._wake.set()

    # delivery

    def _update_idle(self) -> None:
        if self.pending or self.in_flight:
            self._idle.clear()
        else:
            self._idle.set()

    async def flush(self, wait_seconds: float) -> Json:
        """Deliver everything pending now (retries too, without their delay) and wait."""
        for delivery in self.pending:
            delivery.due = 0.0
        self._wake.set()
        async with asyncio.timeout(wait_seconds):
            await self._idle.wait()
        return {"pending": len(self.pending), "delivered": len(self.log_entries)}

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            ready = [delivery for delivery in self.pending if delivery.due <= now]
            if not ready:
                self._wake.clear()
                wait = min((delivery.due for delivery in self.pending), default=now + 3600) - now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.01)):
                        await self._wake.wait()
                continue
            if self.mode.out_of_order:
                await asyncio.sleep(OUT_OF_ORDER_WINDOW_SECONDS)
                ready = [delivery for delivery in self.pending if delivery.due <= time.monotonic()]
                ready.reverse()
            for delivery in ready:
                self.pending.remove(delivery)
            self.in_flight += len(ready)
            for delivery in ready:
                try:
                    await self._deliver(delivery)
                finally:
                    self.in_flight -= 1
            self._update_idle()

    async def _deliver(self, delivery: Delivery) -> None:
        account = self.state.accounts.get(delivery.account_id)
        if account is None:
            return
        endpoint = account.find("webhook_endpoint", delivery.endpoint_id)
        event = account.find("event", delivery.event_id)
        secret_entry = account.table("webhook_secret").get(delivery.endpoint_id)
        if endpoint is None or event is None or secret_entry is None:
            return
        payload = json.dumps(event, indent=2)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(payload, str(secret_entry["secret"]), timestamp),
        }
        delivery.attempts += 1
        status: int | None = None
        error: str | None = None
        assert self._session is not None
        try:
            async with self._session.post(
                str(endpoint["url"]), data=payload.encode(), headers=headers
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        succeeded = status is not None and 200 <= status < 300
        self.log_entries.append(
            {
                "event": event["id"],
                "type": event["type"],
                "endpoint": endpoint["id"],
                "url": endpoint["url"],
                "attempt": delivery.attempts,
                "status": status,
                "error": error,
                "succeeded": succeeded,
            }
        )
        if succeeded:
            event["pending_webhooks"] = max(int(event["pending_webhooks"]) - 1, 0)
            return
        if delivery.attempts <= len(RETRY_DELAYS_SECONDS):
            delivery.due = time.monotonic() + RETRY_DELAYS_SECONDS[delivery.attempts - 1]
            self.pending.append(delivery)
        else:
            log.warning(
                "webhook delivery gave up", extra={"event": event["id"], "url": endpoint["url"]}
            )
