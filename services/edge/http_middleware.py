"""The edge's ASGI wrappers and its error body: every 4xx and 5xx is JSON
``{"error": {"code", "message", "fields"?}}`` and every 429 and 503 carries Retry-After, requests
past the admission bound are shed with 503 OVERLOADED, bodies are bounded, and an app mounted
as it is (the MCP transport) is limited per client address like every other entry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge import metrics

# Retry-After of a 503 that is not an overload (DATABASE_UNAVAILABLE, DEPENDENCY_UNAVAILABLE,
# a webhook not stored, not ready), in seconds: an outage is not over in the 1 s an overload
# is given (OVERLOAD_RETRY_AFTER_SECONDS), and a client told 2 s comes back while a failover
# or a restarted pod is still settling rather than hammering it every second.
UNAVAILABLE_RETRY_AFTER_SECONDS = 2
# Retry-After of a 429 (RATE_LIMITED), in seconds: every budget (per address, contact,
# customer) is counted in a minute from its first hit, so a minute later it has started again.
RATE_LIMITED_RETRY_AFTER_SECONDS = 60
_RETRY_AFTER_SECONDS = {429: RATE_LIMITED_RETRY_AFTER_SECONDS, 503: UNAVAILABLE_RETRY_AFTER_SECONDS}


def error(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> JSONResponse:
    """The error body every 4xx and 5xx carries; a 429 and a 503 say when to retry
    (Retry-After)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    response = JSONResponse({"error": body}, status_code=status)
    retry_after = _RETRY_AFTER_SECONDS.get(status)
    if retry_after is not None:
        response.headers["retry-after"] = str(retry_after)
    return response


def overloaded(retry_after_seconds: int, reason: str) -> JSONResponse:
    """The refusal of a request the edge (or a service behind it) has no room for: 503 with
    Retry-After, counted by ``reason``. Nothing was read or claimed for it."""
    metrics.HTTP_SHED.add(1, {"reason": reason})
    response = error(503, "OVERLOADED", "the service is at capacity; retry shortly")
    response.headers["retry-after"] = str(retry_after_seconds)
    return response


class AdmissionLimit:
    """Admission control: at most ``max_in_flight`` requests are served at once; a request
    past it waits up to ``queue_wait_seconds`` for a place in a queue of at most
    ``max_queued``, else is refused at once (``overloaded``). Past saturation the excess is
    answered within the wait bound instead of queueing in the event loop until callers and
    deadlines time out. ``exempt`` paths (health, readiness, metrics) are never refused.

    Written here rather than taken from a library: uvicorn's ``limit_concurrency`` counts
    open connections (idle keep-alive ones too), answers plain text without Retry-After and
    refuses the probes as well, and the ASGI rate-limit libraries (asgi-ratelimit, slowapi)
    bound requests per time window, not requests in flight."""

    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int,
        max_queued: int,
        queue_wait_seconds: float,
        retry_after_seconds: int,
        exempt: Collection[str] = (),
    ) -> None:
        self._app = app
        self._places = asyncio.Semaphore(max_in_flight)
        self._max_queued = max_queued
        self._queue_wait = queue_wait_seconds
        self._retry_after = retry_after_seconds
        self._exempt = frozenset(exempt)
        self._queued = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._exempt:
            await self._app(scope, receive, send)
            return
        if self._places.locked():
            refused = await self._wait_for_place()
            if refused:
                await overloaded(self._retry_after, refused)(scope, receive, send)
                return
        else:
            # A free place: taken without yielding, so no other request can take it first.
            await self._places.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                self._places.release()

        async def send_then_give_back(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Given back before the answer's last bytes leave, not when the app returns: a
                # caller that sends its next request as soon as it has the answer finds the
                # place free, not still held by the span and metrics the layers inside end
                # after the answer.
                give_back()
            await send(message)

        try:
            await self._app(scope, receive, send_then_give_back)
        finally:
            give_back()

    async def _wait_for_place(self) -> str:
        """Waits in the bounded queue; the reason of the refusal, or "" once a place is
        taken."""
        if self._queued >= self._max_queued or self._queue_wait <= 0:
            return "queue_full"
        self._queued += 1
        try:
            await asyncio.wait_for(self._places.acquire(), self._queue_wait)
        except TimeoutError:
            return "wait_timeout"
        finally:
            self._queued -= 1
        return ""


class JsonErrorBodies:
    """Gives a library's own refusals (the MCP transport answers some 4xx in plain text or
    empty) the JSON error body every 4xx of the edge carries. A class, not a function, so
    Starlette mounts it as an ASGI app rather than as a request handler."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        held: dict[str, Any] | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                content_type = headers.get(b"content-type", b"")
                if message["status"] >= 400 and b"json" not in content_type:
                    held = dict(message)
                    return
            elif held is not None and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                status = int(held["status"])
                text = body.decode(errors="replace").strip() or HTTPStatus(status).phrase
                payload = json.dumps(
                    {"error": {"code": f"HTTP_{status}", "message": text}}
                ).encode()
                kept = [
                    (key, value)
                    for key, value in held.get("headers", [])
                    if key.lower() not in (b"content-type", b"content-length")
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            *kept,
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": payload})
                return
            await send(message)

        await app(scope, receive, rewrite)


class BodyLimit:
    """Refuses bodies over the limit with 413, by Content-Length or by counting the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self._max:
                await error(413, "PAYLOAD_TOO_LARGE", f"body over {self._max} bytes")(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    raise HTTPException(413, "body too large")
            return message

        await self._app(scope, limited, send)


class AddressLimited:
    """Limits an ASGI app (the MCP transport) per client address, like every other entry: the
    visitor is not verified before the tool call runs, so the address is all there is."""

    def __init__(self, app: ASGIApp, allowed: Callable[[Scope], Awaitable[bool]]) -> None:
        self._app = app
        self._allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not await self._allowed(scope):
            await error(429, "RATE_LIMITED", "too many requests from this address")(
                scope, receive, send
            )
            return
        await self._app(scope, receive, send)
