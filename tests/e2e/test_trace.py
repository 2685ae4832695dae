"""One trace follows a refund across the system: the edge's HTTP span, identity, policy, the
billing gateway, the Stripe HTTP call it makes, and the notifier; asserted with an in-memory
exporter on the process's tracer provider (every service runs in this process)."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from askvault.common.v1 import common_pb2
from runtime import telemetry, testing
from tests.e2e.conftest import Stack, eventually
from tests.e2e.test_policy_flows import _set_bounds


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test; aiohttp client calls (the gateway's Stripe SDK client and
    the emulators' webhook posts) become CLIENT spans carrying the trace context."""
    # As every process does at start (runtime.telemetry.configure).
    telemetry.instrument_http_clients()
    try:
        with testing.captured_spans() as exporter:
            yield exporter
    finally:
        AioHttpClientInstrumentor().uninstrument()


def _turn_trace(exporter: InMemorySpanExporter, first_span_count: int) -> list[ReadableSpan]:
    """The spans of the trace of the edge's last chat-turn request."""
    finished = list(exporter.get_finished_spans())[first_span_count:]
    turn = [
        span
        for span in finished
        if span.name == "POST /v1/chat/turns" and span.kind == trace.SpanKind.SERVER
    ][-1]
    trace_id = turn.context.trace_id
    return [span for span in exporter.get_finished_spans() if span.context.trace_id == trace_id]


def _servers(spans: list[ReadableSpan]) -> set[str]:
    return {span.name for span in spans if span.kind == trace.SpanKind.SERVER}


def _stripe_calls(spans: list[ReadableSpan], stripe_url: str) -> list[str]:
    found = []
    for span in spans:
        if span.kind != trace.SpanKind.CLIENT:
            continue
        attributes = span.attributes or {}
        url = str(attributes.get("url.full") or attributes.get("http.url") or "")
        if url.startswith(stripe_url):
            method = attributes.get("http.request.method") or attributes.get("http.method")
            found.append(f"{method} {url[len(stripe_url) :].split('?')[0]}")
    return found


async def test_a_confirmed_refund_is_one_trace_into_stripe(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    await stack.turn("bob", "Why was I charged twice?", conversation="trace")
    before = len(spans.get_finished_spans())
    refunded = await stack.turn("bob", "yes", conversation="trace")
    assert "refunded $19" in refunded["reply"], refunded
    traced = _turn_trace(spans, before)
    servers = _servers(traced)
    assert "/askvault.identity.v1.IdentityService/VerifyVisitor" in servers, servers
    assert "/askvault.policy.v1.PolicyService/Authorize" in servers, servers
    assert "/askvault.billing.v1.BillingGatewayService/RefundCharge" in servers, servers
    assert "/askvault.policy.v1.PolicyService/Redeem" in servers or any(
        "PolicyService/Commit" in name for name in servers
    ), servers
    assert "POST /v1/refunds" in _stripe_calls(traced, stack.stripe_url), _stripe_calls(
        traced, stack.stripe_url
    )
    # Every span of the turn hangs off the edge's request span, itself the child of the
    # test's own request (the stack's aiohttp session is instrumented too): one tree.
    edge_span = next(s for s in traced if s.name == "POST /v1/chat/turns")
    roots = [s for s in traced if s.parent is None]
    assert [s.kind for s in roots] == [trace.SpanKind.CLIENT], [s.name for s in roots]
    assert edge_span.parent is not None
    assert edge_span.parent.span_id == roots[0].context.span_id
    trace_id = edge_span.context.trace_id

    async def every_parent_in_the_trace() -> bool:
        # The refund's webhook continues this trace in the background (below), so a span
        # may have finished while its parent has not yet: the tree is whole once they have.
        in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        ids = {span.context.span_id for span in in_trace}
        return all(s.parent.span_id in ids for s in in_trace if s.parent is not None)

    assert await eventually(every_parent_in_the_trace)
    # Stripe's charge.refunded webhook continues the refund's trace into the notifier's
    # confirmation: the gateway kept the trace context with the operation.
    await stack.flush_webhooks()

    async def confirmation_in_trace() -> bool:
        return any(
            span.context.trace_id == trace_id
            and span.name == "/askvault.notifier.v1.NotifierService/Send"
            for span in spans.get_finished_spans()
        )

    assert await eventually(confirmation_in_trace)

    async def webhook_in_trace() -> bool:
        # The Send is the webhook span's child and ends first: wait for the parent to end
        # too (checking at once failed one run in a few).
        return any(
            span.name == "billing.webhook charge.refunded" and span.context.trace_id == trace_id
            for span in spans.get_finished_spans()
        )

    assert await eventually(webhook_in_trace), "the webhook's processing is not in the trace"
    # With the webhook's part in it, the trace is still one tree.
    assert await eventually(every_parent_in_the_trace)


async def test_an_escalated_refund_is_one_trace_through_the_notifier(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    await _set_bounds(
        stack, "trace-cap", refund_caps=[common_pb2.Money(amount_minor=1000, currency="usd")]
    )
    before = len(spans.get_finished_spans())
    # Over the cap already: the question itself escalates (no "yes" is asked for).
    escalated = await stack.turn("bob", "Why was I charged twice?", conversation="trace-esc")
    assert escalated["escalated"] is True, escalated
    traced = _turn_trace(spans, before)
    servers = _servers(traced)
    for expected in (
        "/askvault.identity.v1.IdentityService/VerifyVisitor",
        "/askvault.billing.v1.BillingGatewayService/FindDuplicateCharges",
        "/askvault.policy.v1.PolicyService/Authorize",
        "/askvault.notifier.v1.NotifierService/Send",
    ):
        assert expected in servers, (expected, servers)


_GET_SUBSCRIPTION = "/askvault.billing.v1.BillingGatewayService/GetSubscription"


def _calls(spans: list[ReadableSpan], rpc: str) -> int:
    return sum(1 for span in spans if span.kind == trace.SpanKind.SERVER and span.name == rpc)


async def test_a_handoff_summary_never_asks_for_the_subscription_again(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    # Issue 16: GetSubscription is not called just to fill an escalation's summary. A turn
    # that read nothing hands off with the contact's tags; one that read the subscription
    # uses that answer. Counted as the gateway's GetSubscription server spans of each turn.
    before = len(spans.get_finished_spans())
    human = await stack.turn("alice", "talk to a human please", conversation="count-human")
    assert human["escalated"] is True, human
    traced = _turn_trace(spans, before)
    assert _calls(traced, _GET_SUBSCRIPTION) == 0, _servers(traced)
    assert "/askvault.notifier.v1.NotifierService/Send" in _servers(traced)
    escalation = next(
        e for e in await stack.escalations() if e.escalation_id == human["escalation_id"]
    )
    assert escalation.context.subscription_summary.startswith("Growth tier, active"), escalation

    await _set_bounds(
        stack, "count-cap", refund_caps=[common_pb2.Money(amount_minor=1000, currency="usd")]
    )
    before = len(spans.get_finished_spans())
    refund = await stack.turn("alice", "please refund my last charge", conversation="count-cap")
    assert refund["escalated"] is True, refund
    traced = _turn_trace(spans, before)
    assert _calls(traced, _GET_SUBSCRIPTION) == 0, _servers(traced)

    # A status turn reads the subscription once; asking for a human next is a new turn that
    # reads nothing more.
    before = len(spans.get_finished_spans())
    status = await stack.turn("alice", "what's my subscription status?", conversation="count-st")
    assert "Growth" in status["reply"], status
    assert _calls(_turn_trace(spans, before), _GET_SUBSCRIPTION) == 1


# A caller's trace context, as a browser's or another service's tracer would send it.
_CALLER_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
_CALLER_SPAN_ID = 0x00F067AA0BA902B7
_TRACEPARENT = f"00-{_CALLER_TRACE_ID:032x}-{_CALLER_SPAN_ID:016x}-01"


async def test_an_incoming_traceparent_is_continued_into_stripe(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    await stack.turn("bob", "Why was I charged twice?", conversation="traceparent")
    before = len(spans.get_finished_spans())
    # A session of its own, without the client instrumentation: the header sent is exactly
    # the caller's, not one the test's own client span would put in its place.
    async with aiohttp.ClientSession() as http:
        AioHttpClientInstrumentor.uninstrument_session(http)
        refunded = await stack.turn(
            "bob",
            "yes",
            conversation="traceparent",
            http=http,
            headers={"traceparent": _TRACEPARENT},
        )
    assert "refunded $19" in refunded["reply"], refunded
    finished = list(spans.get_finished_spans())[before:]
    edge = [
        span
        for span in finished
        if span.kind == trace.SpanKind.SERVER and span.name.endswith("POST /v1/chat/turns")
    ]
    assert len(edge) == 1, [span.name for span in finished]
    # The edge's server span is the caller's span's child: same trace, the caller's span as
    # parent (the HTTP semantic conventions on it).
    assert edge[0].context.trace_id == _CALLER_TRACE_ID
    assert edge[0].parent is not None and edge[0].parent.span_id == _CALLER_SPAN_ID
    assert edge[0].parent.is_remote
    attributes = edge[0].attributes or {}
    assert attributes.get("http.route") == "/v1/chat/turns", attributes
    # The instrumentation's default conventions; OTEL_SEMCONV_STABILITY_OPT_IN=http gives
    # the stable names (http.response.status_code).
    status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    assert status == 200, attributes
    # The gateway's call to Stripe is in the same trace ...
    in_trace = [span for span in finished if span.context.trace_id == _CALLER_TRACE_ID]
    assert "POST /v1/refunds" in _stripe_calls(in_trace, stack.stripe_url), [
        span.name for span in in_trace
    ]
    # ... and Stripe received that trace's context.
    async with stack.http.get(f"{stack.stripe_url}/_emulator/requests") as response:
        logged = (await response.json())["requests"]
    refunds = [
        entry for entry in logged if entry["method"] == "POST" and entry["path"] == "/v1/refunds"
    ]
    assert refunds, logged
    assert refunds[-1]["traceparent"].split("-")[1] == f"{_CALLER_TRACE_ID:032x}", refunds[-1]


async def test_a_request_span_keeps_the_route_not_the_secret_in_the_url(
    spans: InMemorySpanExporter, stack: Stack
) -> None:
    # A confirmation link's token is a credential; WhatsApp's verify token rides in a query.
    secret = "tok_secret_0123456789"
    async with stack.http.get(f"{stack.edge_url}/v1/confirm/{secret}?hub.verify_token={secret}"):
        pass
    server = [
        span
        for span in spans.get_finished_spans()
        if span.kind == trace.SpanKind.SERVER and span.name == "GET /v1/confirm/{token}"
    ]
    assert len(server) == 1, [span.name for span in spans.get_finished_spans()]
    attributes = dict(server[0].attributes or {})
    assert attributes.get("http.route") == "/v1/confirm/{token}", attributes
    assert not [key for key, value in attributes.items() if secret in str(value)], attributes
    # The test's own client span (instrumented by the same code as every process's) too.
    client = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.CLIENT]
    assert client and not [
        key for s in client for key, value in (s.attributes or {}).items() if "hub." in str(value)
    ], [s.attributes for s in client]
