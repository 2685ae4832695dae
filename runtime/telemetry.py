"""OpenTelemetry set-up: traces and metrics, exported by OTLP when an endpoint is given and
served to Prometheus when a metrics port is given (or by the process's own ``/metrics``, the
edge's); outgoing aiohttp requests carry the trace context in every process; asyncpg calls
become spans where spans are exported.

The standard variables are honoured (``plan`` reads them): OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES over the process's own name, OTEL_EXPORTER_OTLP_ENDPOINT and the
per-signal OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT, OTEL_{TRACES,METRICS}_EXPORTER=none,
OTEL_TRACES_SAMPLER (and its _ARG); the SDK itself reads OTEL_SDK_DISABLED, OTEL_PROPAGATORS
and the exporters' OTEL_EXPORTER_OTLP_* options."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_TRACES_SAMPLER,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler

logger = logging.getLogger(__name__)

_configured: Telemetry | None = None


@dataclass(frozen=True)
class Plan:
    """What ``configure`` installs, decided from its arguments and the environment."""

    resource: Resource
    # Where spans and metrics go by OTLP; "" exports none.
    traces_endpoint: str
    metrics_endpoint: str
    # None: the SDK's own choice (OTEL_TRACES_SAMPLER when set, else parent-based always-on).
    sampler: Sampler | None
    # Whether spans are recorded at all (asyncpg's spans are made only then).
    records_spans: bool
    # Whether a Prometheus reader collects the metrics (for METRICS_PORT or an own /metrics).
    prometheus: bool


@dataclass
class Telemetry:
    """The process's providers; ``shutdown`` flushes what is buffered."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        """Flushes and stops the exporters."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _endpoint(environ: Mapping[str, str], signal: str, exporter: str, own: str) -> str:
    """A signal's OTLP endpoint: none when its exporter is "none", else the per-signal
    variable, else the service's own setting, else the general variable."""
    if environ.get(exporter, "").strip().lower() == "none":
        return ""
    return (environ.get(signal) or own or environ.get(OTEL_EXPORTER_OTLP_ENDPOINT) or "").strip()


def plan(
    service_name: str,
    otlp_endpoint: str = "",
    metrics_port: int = 0,
    *,
    serves_metrics: bool = False,
) -> Plan:
    """What to install for a process named ``service_name``, given its settings and the
    environment (nothing is installed)."""
    environ = os.environ
    # The process's name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise:
    # the environment's detector merges last, so a deployment's choice wins.
    resource = Resource.create({"service.name": service_name, "service.namespace": "askvault"})
    resource = resource.merge(OTELResourceDetector().detect())
    traces_endpoint = _endpoint(
        environ, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER, otlp_endpoint
    )
    metrics_endpoint = _endpoint(
        environ, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_METRICS_EXPORTER, otlp_endpoint
    )
    # With nowhere to export spans, none is recorded: trace ids are still made and passed on
    # (logs, callers and outgoing requests keep them), but no span is built only to be
    # dropped. The standard OTEL_TRACES_SAMPLER, when set, decides instead (the SDK reads it
    # when given None).
    sampler_set = bool(environ.get(OTEL_TRACES_SAMPLER, "").strip())
    records_spans = bool(traces_endpoint) or sampler_set
    return Plan(
        resource=resource,
        traces_endpoint=traces_endpoint,
        metrics_endpoint=metrics_endpoint,
        sampler=None if records_spans else ALWAYS_OFF,
        records_spans=records_spans,
        prometheus=bool(metrics_port) or serves_metrics,
    )


def configure(
    service_name: str,
    otlp_endpoint: str = "",
    metrics_port: int = 0,
    *,
    serves_metrics: bool = False,
) -> Telemetry:
    """Installs the global providers once per process (later calls return the first).
    ``serves_metrics``: the process serves the Prometheus output on its own HTTP port (the
    edge's ``/metrics``, ``prometheus_client``'s default registry)."""
    global _configured
    if _configured is not None:
        return _configured
    chosen = plan(service_name, otlp_endpoint, metrics_port, serves_metrics=serves_metrics)
    tracer_provider = TracerProvider(resource=chosen.resource, sampler=chosen.sampler)
    readers: list[MetricReader] = []
    if chosen.traces_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(chosen.traces_endpoint))
        )
    if chosen.metrics_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(chosen.metrics_endpoint)))
    if chosen.prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        # Registers itself with prometheus_client's default registry, which the metrics port
        # and the edge's /metrics serve.
        readers.append(PrometheusMetricReader())
    if metrics_port:
        import prometheus_client

        prometheus_client.start_http_server(metrics_port)
    meter_provider = MeterProvider(resource=chosen.resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    instrument_http_clients()
    if chosen.records_spans:
        # Spans per statement are worth their cost (about a third of a busy gateway's CPU)
        # only where they go somewhere.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _configured = Telemetry(tracer_provider, meter_provider)
    logger.info(
        "telemetry configured",
        extra={
            "service_name": chosen.resource.attributes.get("service.name"),
            "traces_endpoint": chosen.traces_endpoint or None,
            "metrics_endpoint": chosen.metrics_endpoint or None,
            "metrics_port": metrics_port or None,
        },
    )
    return _configured


def instrument_http_clients() -> None:
    """Every aiohttp session made from now on (the Stripe SDK's, the notifier's WhatsApp and
    helpdesk calls, the edge's model client) sends the current trace context as
    ``traceparent`` and makes a CLIENT span. Always on, exported or not: a span that is not
    recorded still passes its trace id on, and one unrecorded span per outgoing request is
    small beside the request. Idempotent (the instrumentor is a singleton)."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    instrumentor = AioHttpClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(url_filter=client_url)


def client_url(url: object) -> str:
    """An outgoing request's URL (aiohttp's ``yarl.URL``) as its span records it: without
    credentials and query (a Stripe list's customer id, a token a provider puts there)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
