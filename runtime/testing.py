"""Helpers for tests that start services for real (in-process, on free ports)."""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import jwt
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from askvault.policy.v1 import policy_pb2
from runtime import database, quotes, server, settings
from runtime.local_identity_provider import LocalIdentityProvider

SettingsT = TypeVar("SettingsT", bound=settings.ServiceSettings)

# The tests' identity provider: it signs admin credentials; servers read its JWKS file.
TEST_ADMIN_ISSUER = "https://id.test.askvault.invalid/"
TEST_ADMIN_PROVIDER = LocalIdentityProvider.generate(TEST_ADMIN_ISSUER, "test-admin-key-1")


def _write_test_jwks() -> str:
    directory = Path(tempfile.mkdtemp(prefix="askvault-test-idp-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "jwks.json"
    TEST_ADMIN_PROVIDER.write_jwks(path)
    return str(path)


TEST_ADMIN_JWKS_FILE = _write_test_jwks()


def admin_settings() -> dict[str, str]:
    """Settings (by field name) that make a server trust the tests' identity provider."""
    return {"admin_issuer": TEST_ADMIN_ISSUER, "admin_jwks_file": TEST_ADMIN_JWKS_FILE}


def admin_environment() -> dict[str, str]:
    """The same as environment variables, for servers started as processes."""
    return {name.upper(): value for name, value in admin_settings().items()}


def make_settings(settings_class: type[SettingsT], database_url: str, **values: Any) -> SettingsT:
    """Settings for a test server: the given database, a free port, quick health probes."""
    defaults: dict[str, Any] = {
        "database_url": database_url,
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "health_probe_interval_seconds": 0.2,
        "shutdown_grace_seconds": 2.0,
        **admin_settings(),
    }
    defaults.update(values)
    return settings_class(**defaults)


# Password of the tests' service login roles (a test cluster only).
TEST_SERVICE_PASSWORD = "askvault-test-service"  # noqa: S105 - tests only


async def service_database_url(database_url: str, schema: str) -> str:
    """The URL of the same database logged in as the service's role, as production runs it:
    a login role (``askvault_<schema>_test``, shared by every test on the cluster) that is a
    member of the group role the service's migrations grant. ``database_url`` must be a
    superuser's (the tests' server is)."""
    connection = await asyncpg.connect(database_url)
    try:
        login = f"askvault_{schema}_test"
        await database.ensure_login_role(
            connection, schema, login, TEST_SERVICE_PASSWORD, reset_password=False
        )
    finally:
        await connection.close()
    return database.with_credentials(database_url, login, TEST_SERVICE_PASSWORD)


@asynccontextmanager
async def running(
    service: server.Service, config: settings.ServiceSettings
) -> AsyncIterator[server.RunningService]:
    """A started service, stopped on exit."""
    started = await server.start(service, config)
    try:
        yield started
    finally:
        await started.stop(grace=1.0)


@contextmanager
def refused_port() -> Iterator[int]:
    """A port where every connection is refused, held for the block: bound but not listening,
    so no other process can take it meanwhile (a port found free and released at once can be
    taken by anyone before the test uses it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


def error_details(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """(status code, ErrorInfo reason, BadRequest field -> description) of a failed call."""
    reason = ""
    violations: dict[str, str] = {}
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.update({v.field: v.description for v in bad_request.field_violations})
    return error.code(), reason, violations


def error_metadata(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a failed call (empty without one)."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return dict(info.metadata)
    return {}


def admin_metadata(subject: str = "admin-alice") -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a test admin credential."""
    token = TEST_ADMIN_PROVIDER.issue(subject)
    return (("authorization", f"Bearer {token}"),)


class _SpanCapture(SpanProcessor):
    """Hands finished spans to the exporter of the test capturing now, if any. Installed once
    per process: a processor added per test would stay on the global provider for the rest of
    the session (the SDK cannot remove one), keeping every later span."""

    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_end(self, span: ReadableSpan) -> None:
        exporter = self.exporter
        if exporter is not None:
            exporter.export((span,))


_span_capture: _SpanCapture | None = None


@contextmanager
def captured_spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished in this process during the block (the global tracer provider is
    made an SDK one if it is not yet)."""
    global _span_capture
    if _span_capture is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        _span_capture = _SpanCapture()
        provider.add_span_processor(_span_capture)
    exporter = InMemorySpanExporter()
    _span_capture.exporter = exporter
    try:
        yield exporter
    finally:
        _span_capture.exporter = None


@dataclass
class CapturedMetrics:
    """What the process's OpenTelemetry instruments recorded while a capture was on."""

    reader: InMemoryMetricReader

    def value(self, name: str, **attributes: str) -> float:
        """The sum of the points of instrument ``name`` (its OpenTelemetry name, e.g.
        ``askvault.notifier.dead_letters``) whose attributes include ``attributes``; a gauge's
        value when they name one point; 0 when nothing was recorded."""
        data = self.reader.get_metrics_data()
        total = 0.0
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        found = point.attributes or {}
                        if all(found.get(key) == wanted for key, wanted in attributes.items()):
                            total += float(getattr(point, "value", 0.0))
        return total


@contextmanager
def captured_metrics() -> Iterator[CapturedMetrics]:
    """The measurements this process's instruments take during the block (and the values
    observable gauges report when read), read from an in-memory reader added to the global
    meter provider for the block; the provider is made an SDK one if it is not yet. A reader
    added now sees only what is recorded from now on, so a counter's value is the block's."""
    provider = metrics.get_meter_provider()
    if not isinstance(provider, MeterProvider):
        metrics.set_meter_provider(MeterProvider())
        provider = metrics.get_meter_provider()
        assert isinstance(provider, MeterProvider), "another meter provider is installed"
    reader = InMemoryMetricReader()
    provider.add_metric_reader(reader)
    try:
        yield CapturedMetrics(reader)
    finally:
        provider.remove_metric_reader(reader)


_metrics_served = False


def served_metrics() -> None:
    """Makes the process's meter provider an SDK one read by the Prometheus exporter, whose
    output prometheus_client's default registry (the edge's /metrics) serves, as
    ``telemetry.configure`` does for the edge; once per process (a second reader would
    repeat every series)."""
    global _metrics_served
    if _metrics_served:
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    provider = metrics.get_meter_provider()
    if isinstance(provider, MeterProvider):
        # Made by captured_metrics earlier in this process: the global provider is set once.
        provider.add_metric_reader(PrometheusMetricReader())
    else:
        metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
    _metrics_served = True


def confirmed(
    request: policy_pb2.AuthorizeRequest,
    *,
    contact_id: str = "",
    expires_at: datetime | None = None,
    channel: policy_pb2.ConfirmationChannel.ValueType = (policy_pb2.CONFIRMATION_CHANNEL_CHAT_TURN),
    summary: str = "Refund as quoted",
) -> policy_pb2.AuthorizeRequest:
    """The request confirmed by the person, as the edge sends it after a "yes": confirmed =
    true with a quote of exactly its terms. The contact defaults to the subject of the
    request's identity assertion; the quote to five minutes from now."""
    if not contact_id:
        claims = jwt.decode(request.identity_assertion, options={"verify_signature": False})
        contact_id = str(claims["sub"])
    expires_at = (expires_at or datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    expiry = timestamp_pb2.Timestamp()
    expiry.FromDatetime(expires_at)
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    request.confirmed = True
    request.confirmation.CopyFrom(
        policy_pb2.Confirmation(
            quote=policy_pb2.Quote(
                quote_id=f"q_{request.idempotency_key}",
                summary=summary,
                expires_at=expiry,
                terms_hash=quotes.terms_hash(
                    workspace_id=request.workspace_id,
                    contact_id=contact_id,
                    action=request.action,
                    details=request.details.SerializeToString(deterministic=True),
                    summary=summary,
                    expires_at=expires_at,
                ),
            ),
            channel=channel,
            confirmed_at=now,
        )
    )
    return request
