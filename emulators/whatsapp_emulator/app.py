"""The emulator's HTTP server (aiohttp).

Cloud API:
- ``POST /{version}/{phone_number_id}/messages`` with ``Authorization: Bearer <token>``:
  template, text or interactive messages; answers ``{"messaging_product": "whatsapp",
  "contacts": [...], "messages": [{"id": "wamid..."}]}`` or a documented error.

Admin (JSON):
- ``GET /_emulator/health``.
- ``GET /_emulator/messages?to=``; ``DELETE /_emulator/messages``.
- ``POST /_emulator/faults``: the next matching sends fail. ``{"code": 130429}`` (any code of
  ``errors.DOCUMENTED``: 130429, 131056, 131026, 131047, 190, ...), ``{"http_status": 503}``
  (a 5xx), ``{"timeout_seconds": 30}`` (hold the request, then 504). Optional: ``"count"``
  (default 1), ``"to"`` (only sends to that number), ``"delivery": "webhook"`` (accept, then
  report the code in a ``failed`` status webhook, as WhatsApp does for 131026/131047).
  ``GET`` lists, ``DELETE`` clears.
- ``POST /_emulator/config``: ``webhook_url``, ``app_secret``, ``access_token``,
  ``auto_statuses`` (default ["sent", "delivered"]), ``status_delay_seconds`` (0.05),
  ``webhook_retry_base_seconds`` (0.2), ``webhook_retry_cap_seconds`` (5.0),
  ``webhook_max_attempts`` (12; 1: no retries).
- ``POST /_emulator/statuses`` ``{"wamid", "status", "error_code"}``: post one status now.
- ``POST /_emulator/inbound`` ``{"phone_number_id", "from", "text"|"button_payload",
  "name"}``: post an inbound message webhook (what a customer's reply looks like).
- ``GET /_emulator/webhooks``: every attempt to post a webhook (``delivery_id``,
  ``attempt``, ``status``, ``taken``) and the deliveries waiting for a retry (``pending``).
- ``POST /_emulator/webhooks/flush`` ``{"timeout"}``: retries every pending delivery now
  (once each), waiting up to ``timeout`` seconds (10) for the attempts; the pending left.

Webhooks are signed with ``X-Hub-Signature-256`` (see ``signing``). A webhook the receiver
did not take (an answer other than 2xx, or none) is posted again, as WhatsApp retries it
(for days, less and less often): here after ``webhook_retry_base_seconds``, doubling up to
``webhook_retry_cap_seconds``, until ``webhook_max_attempts`` attempts were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from whatsapp_emulator import errors, signing

logger = logging.getLogger(__name__)

WABA_ID = "102290129340398"
DISPLAY_NUMBER = "15550001111"
# Seconds each step of a stop may take (pending posts, the HTTP session).
STOP_SECONDS = 5.0


@dataclass
class Fault:
    """A queued failure."""

    code: int = 0
    http_status: int = 0
    timeout_seconds: float = 0.0
    count: int = 1
    to: str = ""
    delivery: str = "sync"


@dataclass
class PendingDelivery:
    """A webhook the receiver has not taken yet, waiting for its next attempt."""

    delivery_id: str
    body: dict[str, Any]
    attempts: int
    next_attempt_at: float
    # Set by a flush: the next attempt now; set after each attempt (a flush waits for it).
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    attempted: asyncio.Event = field(default_factory=asyncio.Event)

    def as_json(self) -> dict[str, Any]:
        """The admin API's view."""
        return {
            "delivery_id": self.delivery_id,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "body": self.body,
        }


@dataclass
class State:
    """Everything the emulator remembers."""

    access_token: str = "local-whatsapp-token"  # noqa: S105 - a local emulator's default
    app_secret: str = "local-whatsapp-app-secret"  # noqa: S105 - a local emulator's default
    webhook_url: str = ""
    auto_statuses: list[str] = field(default_factory=lambda: ["sent", "delivered"])
    status_delay_seconds: float = 0.05
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # Every attempt to post a webhook, and the deliveries waiting for their next attempt.
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, PendingDelivery] = field(default_factory=dict)
    webhook_retry_base_seconds: float = 0.2
    webhook_retry_cap_seconds: float = 5.0
    webhook_max_attempts: int = 12

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next attempt of a delivery tried ``attempts`` times."""
        return min(
            self.webhook_retry_cap_seconds,
            self.webhook_retry_base_seconds * 2.0 ** max(0, attempts - 1),
        )

    def take_fault(self, to: str) -> Fault | None:
        """The next fault for this recipient, used up by one."""
        for fault in self.faults:
            if fault.count > 0 and (not fault.to or fault.to == to):
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None


STATE_KEY = web.AppKey("state", State)
POSTER_KEY: web.AppKey[WebhookPoster] = web.AppKey("poster")


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def new_wamid() -> str:
    """A message id in WhatsApp's shape."""
    return "wamid." + secrets.token_urlsafe(24)


def status_payload(
    phone_number_id: str, wamid: str, recipient: str, status: str, error_code: int = 0
) -> dict[str, Any]:
    """A status webhook body."""
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": _digits(recipient),
    }
    if status == "failed":
        entry["errors"] = [errors.webhook_error(error_code or 131026)]
    return _envelope(phone_number_id, {"statuses": [entry]})


def inbound_payload(
    phone_number_id: str, sender: str, name: str, text: str, button_payload: str
) -> dict[str, Any]:
    """An inbound message webhook body (text, or a quick-reply button press)."""
    message: dict[str, Any] = {
        "from": _digits(sender),
        "id": new_wamid(),
        "timestamp": str(int(time.time())),
    }
    if button_payload:
        message["type"] = "button"
        message["button"] = {"payload": button_payload, "text": text or button_payload}
    else:
        message["type"] = "text"
        message["text"] = {"body": text}
    return _envelope(
        phone_number_id,
        {
            "contacts": [{"profile": {"name": name}, "wa_id": _digits(sender)}],
            "messages": [message],
        },
    )


def _envelope(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA_ID,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": DISPLAY_NUMBER,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


class WebhookPoster:
    """Posts signed webhooks to the configured URL, in the background."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancels pending posts and closes the HTTP session."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            # Bounded: a post stuck in a peer that never answers must not hang the stop.
            await asyncio.wait(set(self._tasks), timeout=STOP_SECONDS)
        if self._session is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_SECONDS):
                    await self._session.close()
            self._session = None

    def later(self, delay: float, body: dict[str, Any]) -> None:
        """Posts the body after a delay (the API answer goes out first), and again until
        it is taken."""
        self._spawn(self._post_after(delay, body))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_after(self, delay: float, body: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        await self.post(body)

    async def post(self, body: dict[str, Any]) -> int:
        """Posts now, and again in the background until the receiver takes it; the first
        attempt's HTTP status (0 when unreachable, or when no URL is set: then nothing is
        recorded or retried)."""
        if not self._state.webhook_url:
            return 0
        delivery_id = "whd_" + secrets.token_hex(8)
        status = await self._attempt(delivery_id, 1, body)
        if not _taken(status) and self._state.webhook_max_attempts > 1:
            pending = PendingDelivery(
                delivery_id, body, 1, time.time() + self._state.retry_delay(1)
            )
            self._state.pending[delivery_id] = pending
            self._spawn(self._retry(pending))
        return status

    async def _retry(self, pending: PendingDelivery) -> None:
        """Posts a delivery again after each backoff until it is taken or out of attempts."""
        try:
            while pending.attempts < self._state.webhook_max_attempts:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, pending.next_attempt_at - time.time())):
                        await pending.wake.wait()
                pending.wake.clear()
                status = await self._attempt(
                    pending.delivery_id, pending.attempts + 1, pending.body
                )
                pending.attempts += 1
                pending.attempted.set()
                if _taken(status):
                    return
                pending.next_attempt_at = time.time() + self._state.retry_delay(pending.attempts)
            logger.warning("webhook given up after %d attempts", pending.attempts)
        finally:
            self._state.pending.pop(pending.delivery_id, None)
            pending.attempted.set()

    async def flush(self, seconds: float) -> list[PendingDelivery]:
        """Makes every pending delivery's next attempt now; waits up to ``seconds`` for
        those attempts; the deliveries still pending."""
        flushed = list(self._state.pending.values())
        for pending in flushed:
            pending.attempted.clear()
            pending.wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.gather(*(pending.attempted.wait() for pending in flushed))
        return list(self._state.pending.values())

    async def _attempt(self, delivery_id: str, attempt: int, body: dict[str, Any]) -> int:
        """One post of the delivery, recorded; its HTTP status (0: no answer)."""
        url = self._state.webhook_url
        raw = json.dumps(body).encode()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        status = 0
        if url:
            try:
                async with self._session.post(
                    url,
                    data=raw,
                    headers={
                        "Content-Type": "application/json",
                        signing.HEADER: signing.sign(raw, self._state.app_secret),
                    },
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                logger.warning("webhook post failed: %s", type(error).__name__)
        self._state.webhooks.append(
            {
                "url": url,
                "body": body,
                "status": status,
                "delivery_id": delivery_id,
                "attempt": attempt,
                "taken": _taken(status),
                "at": time.time(),
            }
        )
        return status


def _taken(status: int) -> bool:
    """Whether the receiver took a webhook: WhatsApp counts only a 2xx answer."""
    return 200 <= status < 300


def create_app(state: State | None = None) -> web.Application:
    """The emulator's application."""
    app = web.Application()
    app[STATE_KEY] = state if state is not None else State()
    app[POSTER_KEY] = WebhookPoster(app[STATE_KEY])
    app.on_cleanup.append(_close_poster)
    app.router.add_post("/{version}/{phone_number_id}/messages", _send)
    app.router.add_get("/_emulator/health", _health)
    app.router.add_get("/_emulator/messages", _messages)
    app.router.add_delete("/_emulator/messages", _clear_messages)
    app.router.add_get("/_emulator/faults", _faults)
    app.router.add_post("/_emulator/faults", _add_fault)
    app.router.add_delete("/_emulator/faults", _clear_faults)
    app.router.add_post("/_emulator/config", _config)
    app.router.add_post("/_emulator/statuses", _post_status)
    app.router.add_post("/_emulator/inbound", _post_inbound)
    app.router.add_get("/_emulator/webhooks", _webhooks)
    app.router.add_post("/_emulator/webhooks/flush", _flush_webhooks)
    return app


async def _close_poster(app: web.Application) -> None:
    await app[POSTER_KEY].close()


GRAPH_API_VERSION = re.compile(r"^v\d{1,3}\.\d{1,2}$")


def _error(code: int) -> web.Response:
    status, body = errors.error_body(code)
    return web.json_response(body, status=status)


async def _send(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    # Any Graph API version ("v26.0"), as the real API takes every version it still serves;
    # a path without one is refused as Meta refuses an unknown path.
    if not GRAPH_API_VERSION.match(request.match_info["version"]):
        return _error(100)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or token != state.access_token:
        return _error(190)
    try:
        body = await request.json()
    except ValueError:
        return _error(100)
    to = str(body.get("to", "")) if isinstance(body, dict) else ""
    kind = body.get("type", "text") if isinstance(body, dict) else ""
    if (
        body.get("messaging_product") != "whatsapp"
        or not to
        or kind
        not in (
            "template",
            "text",
            "interactive",
        )
    ):
        return _error(100)
    if kind == "template" and not (body.get("template") or {}).get("name"):
        return _error(132001)
    phone_number_id = request.match_info["phone_number_id"]
    fault = state.take_fault(to)
    if fault is not None and fault.delivery != "webhook":
        if fault.timeout_seconds:
            await asyncio.sleep(fault.timeout_seconds)
            return web.json_response({"error": {"message": "timeout", "code": 2}}, status=504)
        if fault.http_status:
            _, error_body = errors.error_body(131000 if fault.http_status == 500 else 2)
            return web.json_response(error_body, status=fault.http_status)
        return _error(fault.code)
    wamid = new_wamid()
    state.messages.append(
        {
            "wamid": wamid,
            "phone_number_id": phone_number_id,
            "version": request.match_info["version"],
            "to": to,
            "type": kind,
            "template": body.get("template"),
            "text": (body.get("text") or {}).get("body", ""),
            "body": body,
            "received_at": time.time(),
        }
    )
    poster = request.app[POSTER_KEY]
    if fault is not None:
        poster.later(
            state.status_delay_seconds,
            status_payload(phone_number_id, wamid, to, "failed", fault.code),
        )
    else:
        for index, auto_status in enumerate(state.auto_statuses):
            poster.later(
                state.status_delay_seconds * (index + 1),
                status_payload(phone_number_id, wamid, to, auto_status),
            )
    return web.json_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": _digits(to)}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
    )


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _messages(request: web.Request) -> web.Response:
    to = request.query.get("to", "")
    found = [m for m in request.app[STATE_KEY].messages if not to or m["to"] == to]
    return web.json_response({"messages": found})


async def _clear_messages(request: web.Request) -> web.Response:
    request.app[STATE_KEY].messages.clear()
    return web.json_response({"ok": True})


async def _faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [f.__dict__ for f in request.app[STATE_KEY].faults]})


async def _add_fault(request: web.Request) -> web.Response:
    body = await request.json()
    fault = Fault(
        code=int(body.get("code", 0)),
        http_status=int(body.get("http_status", 0)),
        timeout_seconds=float(body.get("timeout_seconds", 0.0)),
        count=int(body.get("count", 1)),
        to=str(body.get("to", "")),
        delivery=str(body.get("delivery", "sync")),
    )
    if not (fault.code or fault.http_status or fault.timeout_seconds):
        return web.json_response({"error": "one of code, http_status, timeout_seconds"}, status=400)
    if fault.delivery == "webhook" and not fault.code:
        return web.json_response({"error": "webhook delivery needs a code"}, status=400)
    request.app[STATE_KEY].faults.append(fault)
    return web.json_response({"fault": fault.__dict__})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].faults.clear()
    return web.json_response({"ok": True})


async def _config(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE_KEY]
    for name in ("webhook_url", "app_secret", "access_token"):
        if name in body:
            setattr(state, name, str(body[name]))
    if "auto_statuses" in body:
        state.auto_statuses = [str(s) for s in body["auto_statuses"]]
    if "status_delay_seconds" in body:
        state.status_delay_seconds = max(0.0, float(body["status_delay_seconds"]))
    if "webhook_retry_base_seconds" in body:
        state.webhook_retry_base_seconds = max(0.0, float(body["webhook_retry_base_seconds"]))
    if "webhook_retry_cap_seconds" in body:
        state.webhook_retry_cap_seconds = max(0.0, float(body["webhook_retry_cap_seconds"]))
    if "webhook_max_attempts" in body:
        state.webhook_max_attempts = max(1, int(body["webhook_max_attempts"]))
    return web.json_response(
        {
            "webhook_url": state.webhook_url,
            "auto_statuses": state.auto_statuses,
            "status_delay_seconds": state.status_delay_seconds,
            "webhook_retry_base_seconds": state.webhook_retry_base_seconds,
            "webhook_retry_cap_seconds": state.webhook_retry_cap_seconds,
            "webhook_max_attempts": state.webhook_max_attempts,
        }
    )


async def _post_status(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE_KEY]
    sent = next((m for m in state.messages if m["wamid"] == body.get("wamid")), None)
    if sent is None:
        return web.json_response({"error": "unknown wamid"}, status=404)
    webhook_status = await request.app[POSTER_KEY].post(
        status_payload(
            sent["phone_number_id"],
            sent["wamid"],
            sent["to"],
            str(body.get("status", "read")),
            int(body.get("error_code", 0)),
        )
    )
    return web.json_response({"webhook_status": webhook_status})


async def _post_inbound(request: web.Request) -> web.Response:
    body = await request.json()
    payload = inbound_payload(
        str(body.get("phone_number_id", "")),
        str(body.get("from", "")),
        str(body.get("name", "")),
        str(body.get("text", "")),
        str(body.get("button_payload", "")),
    )
    status = await request.app[POSTER_KEY].post(payload)
    return web.json_response({"webhook_status": status, "payload": payload})


async def _webhooks(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response(
        {
            "webhooks": state.webhooks,
            "pending": [pending.as_json() for pending in state.pending.values()],
        }
    )


async def _flush_webhooks(request: web.Request) -> web.Response:
    body = await request.json() if request.can_read_body else {}
    timeout = float(body.get("timeout", 10.0)) if isinstance(body, dict) else 10.0
    left = await request.app[POSTER_KEY].flush(max(0.0, timeout))
    return web.json_response({"pending": [pending.as_json() for pending in left]})


@dataclass
class RunningEmulator:
    """A started emulator."""

    state: State
    url: str
    _runner: web.AppRunner

    async def close(self) -> None:
        """Stops the server and its pending webhooks."""
        with contextlib.suppress(Exception):
            await self._runner.cleanup()


async def start(
    host: str = "127.0.0.1", port: int = 0, state: State | None = None
) -> RunningEmulator:
    """Starts the emulator on the running loop (port 0: a free port)."""
    app = create_app(state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1])
    return RunningEmulator(app[STATE_KEY], f"http://{host}:{bound}", runner)
