"""The edge's admission bound is the outermost layer of its app: a request past the bound is
refused 503 OVERLOADED with Retry-After before a span, a route match or a per-route metric is
made for it (a refusal costs the saturated replica next to nothing), and it is counted as a
shed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from opentelemetry.trace import SpanKind

from runtime import testing
from tests.e2e.conftest import WORKSPACE, running_stack


async def test_a_shed_request_makes_no_span_and_is_counted(database_url: str) -> None:
    async with running_stack(database_url, http_max_in_flight=1, http_max_queued=0) as stack:
        # The one place is taken by a turn whose body has not finished arriving: admitted,
        # then waiting for the rest of its body.
        body_may_end = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"workspace_id": "' + WORKSPACE.encode()
            await body_may_end.wait()
            yield b'", "conversation_id": "held", "text": "hi"}'

        async def held_turn() -> int:
            async with stack.http.post(
                f"{stack.edge_url}/v1/chat/turns",
                data=slow_body(),
                headers={"Content-Type": "application/json"},
            ) as response:
                return response.status

        with (
            testing.captured_spans() as spans,
            testing.captured_metrics() as metrics,
        ):
            held = asyncio.ensure_future(held_turn())
            try:
                # The held turn is admitted first: its headers are sent at once.
                await asyncio.sleep(1.0)
                # On another connection of the session: the held turn keeps its own.
                async with stack.http.post(
                    f"{stack.edge_url}/v1/chat/turns",
                    json={"workspace_id": WORKSPACE, "conversation_id": "shed", "text": "hi"},
                ) as response:
                    body = await response.json()
                    assert response.status == 503, body
                    assert body["error"]["code"] == "OVERLOADED", body
                    assert response.headers.get("Retry-After", "").isdigit()
                shed_spans = [
                    span
                    for span in spans.get_finished_spans()
                    if span.kind == SpanKind.SERVER and "/v1/chat/turns" in span.name
                ]
                assert shed_spans == [], [span.name for span in shed_spans]
                assert metrics.value("askvault.edge.http.shed") == 1
            finally:
                body_may_end.set()
            assert await held == 200
