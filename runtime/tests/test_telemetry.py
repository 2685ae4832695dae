"""What ``runtime.telemetry`` installs, from its settings and the standard OTEL_* variables
(``plan`` is pure: nothing is installed), and that an outgoing request carries the trace
context when no span is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import grpc.aio
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import context, propagate
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from runtime import grpc_typing, interceptors, telemetry, testing

_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_TRACES_SAMPLER",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_without_variables_the_process_names_itself_and_records_no_span() -> None:
    chosen = telemetry.plan("policy")
    assert chosen.resource.attributes["service.name"] == "policy"
    assert chosen.resource.attributes["service.namespace"] == "askvault"
    assert (chosen.traces_endpoint, chosen.metrics_endpoint) == ("", "")
    assert chosen.sampler is ALWAYS_OFF and not chosen.records_spans
    assert not chosen.prometheus


def test_otel_service_name_and_resource_attributes_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-gateway-eu")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.namespace=payments"
    )
    attributes = telemetry.plan("billing_gateway").resource.attributes
    assert attributes["service.name"] == "billing-gateway-eu"
    assert attributes["service.namespace"] == "payments"
    assert attributes["deployment.environment"] == "prod"


def test_service_name_in_resource_attributes_wins_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=edge-canary")
    assert telemetry.plan("edge").resource.attributes["service.name"] == "edge-canary"


def test_the_general_endpoint_variable_exports_when_the_setting_is_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    chosen = telemetry.plan("identity", otlp_endpoint="")
    assert chosen.traces_endpoint == chosen.metrics_endpoint == "http://collector:4317"
    # Exported: the SDK's own sampler (parent-based, always on), asyncpg's spans on.
    assert chosen.sampler is None and chosen.records_spans


def test_the_setting_then_per_signal_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317")
    chosen = telemetry.plan("identity", otlp_endpoint="http://own:4317")
    assert chosen.traces_endpoint == chosen.metrics_endpoint == "http://own:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
    chosen = telemetry.plan("identity", otlp_endpoint="http://own:4317")
    assert chosen.traces_endpoint == "http://traces:4317"
    assert chosen.metrics_endpoint == "http://own:4317"


def test_an_exporter_of_none_exports_nothing_of_that_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    chosen = telemetry.plan("notifier", otlp_endpoint="http://collector:4317")
    assert chosen.traces_endpoint == "" and not chosen.records_spans
    assert chosen.metrics_endpoint == "http://collector:4317"


def test_otel_traces_sampler_decides_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    chosen = telemetry.plan("policy")
    # None: the SDK builds the sampler from OTEL_TRACES_SAMPLER (and its _ARG).
    assert chosen.sampler is None and chosen.records_spans
    assert (
        TracerProvider(sampler=chosen.sampler)
        .sampler.get_description()
        .startswith("ParentBased{root:TraceIdRatioBased")
    )


def test_a_metrics_port_or_an_own_metrics_route_reads_metrics_for_prometheus() -> None:
    assert telemetry.plan("policy", metrics_port=9464).prometheus
    assert telemetry.plan("edge", serves_metrics=True).prometheus


@pytest.fixture
async def echo_traceparent() -> AsyncIterator[tuple[str, list[str]]]:
    """A local HTTP server that keeps the ``traceparent`` header of every request."""
    received: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/", received
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_a_request_carries_the_trace_when_no_span_is_recorded(
    echo_traceparent: tuple[str, list[str]],
) -> None:
    url, received = echo_traceparent
    # The provider of a process that exports nothing (telemetry.plan's sampler then).
    provider = TracerProvider(sampler=telemetry.plan("edge").sampler)
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    token = context.attach(propagate.extract({"traceparent": incoming}))
    try:
        config = create_trace_config(tracer_provider=provider)
        async with (
            # One connection, closed with the request: no keep-alive socket is left for the
            # garbage collector to find after the server stopped.
            aiohttp.ClientSession(
                trace_configs=[config], connector=aiohttp.TCPConnector(force_close=True)
            ) as http,
            http.get(url) as response,
        ):
            assert response.status == 200
    finally:
        context.detach(token)
    version, trace_id, span_id, flags = received[0].split("-")
    # The caller's trace goes on, from a span of its own, marked as not sampled.
    assert (version, trace_id) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert span_id != "00f067aa0ba902b7" and flags == "00"


def test_an_outgoing_requests_span_keeps_no_query_nor_credentials() -> None:
    assert (
        telemetry.client_url("https://user:pw@api.stripe.com:443/v1/charges?customer=cus_1#x")
        == "https://api.stripe.com:443/v1/charges"
    )
    assert telemetry.client_url("http://[::1]:8080/hook?token=t") == "http://[::1]:8080/hook"


@pytest.mark.integration
async def test_rpc_durations_fall_in_sub_second_buckets() -> None:
    """A real call through the server interceptor is recorded in buckets of seconds fine
    enough for a latency alert: its bucket's upper bound is at most a quarter second (the
    SDK's default bounds would put it under 5 "seconds", telling nothing)."""
    with testing.captured_metrics() as captured:
        server = grpc.aio.server(interceptors=[interceptors.ServerInterceptor("test")])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await grpc_typing.health_stub(channel).Check(health_pb2.HealthCheckRequest())
        finally:
            await server.stop(None)
        data = captured.reader.get_metrics_data()
    points = [
        point
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "askvault.rpc.server.duration"
        for point in metric.data.data_points
    ]
    assert points, "no duration recorded"
    point = points[0]
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == interceptors.RPC_DURATION_BUCKETS
    first_used = next(i for i, count in enumerate(point.bucket_counts) if count)
    assert point.explicit_bounds[first_used] <= 0.25
