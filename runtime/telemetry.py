"""OpenTelemetry set-up: traces and metrics, exported by OTLP when an endpoint is given and
served to Prometheus when a metrics port is given; asyncpg calls become spans where spans are
exported."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

logger = logging.getLogger(__name__)

_configured: Telemetry | None = None


@dataclass
class Telemetry:
    """The process's providers; ``shutdown`` flushes what is buffered."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        """Flushes and stops the exporters."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def configure(service_name: str, otlp_endpoint: str = "", metrics_port: int = 0) -> Telemetry:
    """Installs the global providers once per process (later calls return the first)."""
    global _configured
    if _configured is not None:
        return _configured
    resource = Resource.create({"service.name": service_name, "service.namespace": "askvault"})
    # With nowhere to export spans, none is recorded: trace ids are still made and passed on
    # (logs and callers keep them), but no span is built only to be dropped. The standard
    # OTEL_TRACES_SAMPLER, when set, decides instead (the SDK reads it when given None).
    exported = bool(otlp_endpoint or os.environ.get("OTEL_TRACES_SAMPLER"))
    tracer_provider = TracerProvider(resource=resource, sampler=None if exported else ALWAYS_OFF)
    readers: list[MetricReader] = []
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(otlp_endpoint)))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(otlp_endpoint)))
    if metrics_port:
        import prometheus_client
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        prometheus_client.start_http_server(metrics_port)
        readers.append(PrometheusMetricReader())
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    if exported:
        # Spans per statement are worth their cost (about a third of a busy gateway's CPU)
        # only where they go somewhere.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _configured = Telemetry(tracer_provider, meter_provider)
    logger.info(
        "telemetry configured",
        extra={"otlp_endpoint": otlp_endpoint or None, "metrics_port": metrics_port or None},
    )
    return _configured
