"""The edge's admission control on a real uvicorn server saturated by concurrent slow
requests: the excess is answered 503 OVERLOADED with Retry-After and a JSON body within the
queue's wait bound (none times out, no connection is dropped), each shed is counted, and
health, readiness and metrics are answered all along."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.http_middleware import AdmissionLimit
from runtime import http_server, testing

pytestmark = pytest.mark.integration

SLOW_SECONDS = 1.5
MAX_IN_FLIGHT = 2
MAX_QUEUED = 2
QUEUE_WAIT_SECONDS = 0.2
CALLERS = 12


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str
    code: str
    seconds: float


@asynccontextmanager
async def _saturable_server() -> AsyncIterator[str]:
    """A real server with the edge's admission limit around a slow route and the probes."""

    async def slow(request: Request) -> Response:
        await asyncio.sleep(SLOW_SECONDS)
        return JSONResponse({"ok": True})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/chat/turns", slow, methods=["POST"]),
            *(Route(path, healthz) for path in http_server.UNTRACED_PATHS),
        ],
        middleware=[
            Middleware(
                AdmissionLimit,
                max_in_flight=MAX_IN_FLIGHT,
                max_queued=MAX_QUEUED,
                queue_wait_seconds=QUEUE_WAIT_SECONDS,
                retry_after_seconds=2,
                exempt=http_server.UNTRACED_PATHS,
            )
        ],
    )
    server = await http_server.start(app, "127.0.0.1", 0, name="overload", grace_seconds=1.0)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.drain(1.0)


async def _post(http: aiohttp.ClientSession, url: str) -> Answer:
    started = time.perf_counter()
    async with http.post(f"{url}/v1/chat/turns", json={"text": "hi"}) as response:
        body = await response.json()
        code = body["error"]["code"] if response.status != 200 else ""
        return Answer(
            response.status,
            response.headers.get("Retry-After", ""),
            code,
            time.perf_counter() - started,
        )


async def test_past_the_bound_requests_are_shed_quickly_with_retry_after() -> None:
    with testing.captured_metrics() as captured:
        async with (
            _saturable_server() as url,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        ):
            turns = [asyncio.ensure_future(_post(http, url)) for _ in range(CALLERS)]
            await asyncio.sleep(0.3)
            # Saturated: the probes and the scrape are still answered, at once.
            for path in http_server.UNTRACED_PATHS:
                started = time.perf_counter()
                async with http.get(f"{url}{path}") as probe:
                    assert probe.status == 200, path
                assert time.perf_counter() - started < 0.5, path
            answers = await asyncio.gather(*turns)  # none raised: no timeout, no drop
        shed_count = captured.value("askvault.edge.http.shed")

    served = [answer for answer in answers if answer.status == 200]
    shed = [answer for answer in answers if answer.status != 200]
    assert len(served) == MAX_IN_FLIGHT, answers
    assert len(shed) == CALLERS - MAX_IN_FLIGHT, answers
    for answer in shed:
        assert answer.status == 503
        assert answer.code == "OVERLOADED"
        assert answer.retry_after == "2"
        # Within the queue's wait bound (plus the machine's slack), far under the slow route.
        assert answer.seconds < QUEUE_WAIT_SECONDS + 0.5, answer
    assert shed_count == CALLERS - MAX_IN_FLIGHT


class _WorkAfterTheAnswer:
    """A layer that keeps working after the answer has left (as the tracing middleware ends
    its span and the route's metrics are recorded), for ``seconds``."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self._app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)
        if scope["type"] == "http":
            await asyncio.sleep(self._seconds)


async def test_a_caller_sending_again_on_the_answer_finds_its_place_free() -> None:
    """The bound counts requests not yet answered: with one place and no queue, a caller that
    sends its next request as soon as it has the answer is served every time, even while the
    layers inside still finish the previous request."""

    async def quick(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/v1/chat/turns", quick, methods=["POST"])],
        middleware=[
            Middleware(
                AdmissionLimit,
                max_in_flight=1,
                max_queued=0,
                queue_wait_seconds=0.0,
                retry_after_seconds=1,
            ),
            Middleware(_WorkAfterTheAnswer, seconds=0.5),
        ],
    )
    server = await http_server.start(app, "127.0.0.1", 0, name="overload", grace_seconds=1.0)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            url = f"http://127.0.0.1:{server.port}"
            answers = [await _post(http, url) for _ in range(3)]
    finally:
        await server.drain(1.0)
    assert [answer.status for answer in answers] == [200, 200, 200], answers
