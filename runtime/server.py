"""Start-up and shutdown of every process of the skill: ``main`` is the whole entry point of
``python -m <svc>`` for a gRPC service; ``run_process``, ``serve_until_signalled``,
``open_database``, ``DatabaseProbe`` and ``close_pool`` are the parts the edge (an HTTP
server) shares with them, so it starts, drains and reports health the same way.

Order of start: settings, logs, telemetry, database pool (migrations applied), gRPC server
(interceptors, health, reflection, the service's servicers), the service's workers.
Shutdown on SIGTERM or SIGINT runs in reverse: health flips to NOT_SERVING, new calls are
refused while in-flight calls get the grace period, workers stop, the pool closes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from runtime import clients, database, logs, service_auth, settings, tasks, telemetry
from runtime.admission import Admission
from runtime.health import DATABASE, SHUTTING_DOWN, Health
from runtime.interceptors import ServerInterceptor

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=settings.ServiceSettings)
SettingsContraT = TypeVar("SettingsContraT", bound=settings.ServiceSettings, contravariant=True)

# Seconds the pool gets to close gracefully at shutdown before its connections are cut.
_POOL_CLOSE_SECONDS = 5.0
# Seconds a service's own stop (its workers, its channels) may take; past it, it is cancelled.
_SERVICE_STOP_SECONDS = 15.0
# Seconds past the delay and the grace after which a stuck shutdown ends the process: the
# workers' stop and the pool's close come after the grace.
_STOP_MARGIN_SECONDS = 15.0


@dataclass
class Resources:
    """What the runtime hands a service when it starts."""

    settings: settings.ServiceSettings
    pool: asyncpg.Pool
    health: Health


class Service(Protocol):
    """A service as the runtime sees it. A service may also have ``allowed_callers``
    (RPC name or ``service_auth.EVERY_RPC`` -> caller names), enforced when
    SERVICE_PUBLIC_KEYS or SERVICE_TRUST_DOMAIN is set; without it, no service may call it
    then."""

    @property
    def name(self) -> str:
        """Short name: the schema, the log "service" field, the telemetry service.name."""

    @property
    def migrations_package(self) -> str:
        """Package holding the numbered migrations ("identity.migrations")."""

    @property
    def error_domain(self) -> str:
        """ErrorInfo domain ("identity.askvault.dev")."""

    @property
    def service_names(self) -> Sequence[str]:
        """Fully-qualified gRPC service names, for health and reflection."""

    async def start(self, server: grpc.aio.Server, resources: Resources) -> None:
        """Registers servicers on the server and starts background workers."""

    async def stop(self) -> None:
        """Stops background workers, finishing or handing back the work they hold."""


@dataclass
class RunningService:
    """A started service; tests use it directly, ``serve`` waits on signals around it."""

    service: Service
    server: grpc.aio.Server
    pool: asyncpg.Pool
    health: Health
    port: int
    _probe: DatabaseProbe
    _settings: settings.ServiceSettings
    # The bound on calls in flight (GRPC_MAX_IN_FLIGHT) the interceptor enforces.
    admission: Admission

    @property
    def address(self) -> str:
        """host:port the server listens on (loopback form for local clients)."""
        return f"127.0.0.1:{self.port}"

    @property
    def listening_on(self) -> str:
        return self.address

    async def stop(self, grace: float | None = None) -> None:
        """Drains and stops: NOT_SERVING first, then in-flight calls get the grace. Every step
        has a bound, so a stuck call, worker or connection cannot hang the stop."""
        await self.health.set_component(SHUTTING_DOWN, False)
        if self._settings.shutdown_delay_seconds:
            await asyncio.sleep(self._settings.shutdown_delay_seconds)
        grace = grace if grace is not None else self._settings.shutdown_grace_seconds
        # grpc.aio's stop can hang after a call was cancelled mid-flight (grpc/grpc#28999).
        await tasks.bounded(self.server.stop(grace), grace + tasks.STOP_STEP_SECONDS, "grpc server")
        # A service that finishes work in flight as it stops (the notifier's deliveries) says
        # how long that may take with its shutdown deadline.
        service_stop = max(_SERVICE_STOP_SECONDS, self._settings.shutdown_deadline_seconds)
        await tasks.bounded(self.service.stop(), service_stop, self.service.name)
        await self._probe.stop()
        await close_pool(self.pool)
        logger.info("stopped", extra={"port": self.port})


def _server_credentials(config: settings.ServiceSettings) -> grpc.ServerCredentials:
    """TLS for the gRPC port; with a client CA, clients must present a certificate (mTLS)."""
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def open_database(
    config: settings.ServiceSettings, schema: str, migrations_package: str
) -> asyncpg.Pool:
    """The process's pool on its schema, migrations applied first when MIGRATE_ON_START."""
    dsn = config.database_url.get_secret_value()
    if config.migrate_on_start:
        await database.migrate_url(config.migration_dsn(), schema, migrations_package)
    return await database.create_pool(
        dsn,
        schema,
        min_size=config.database_pool_min_size,
        max_size=config.database_pool_max_size,
    )


@dataclass
class DatabaseProbe:
    """Marks the database component of a health well at start, then probes it until
    stopped (``stop`` is bounded like every step of a shutdown)."""

    task: asyncio.Task[None]
    stopping: asyncio.Event

    @classmethod
    async def start(
        cls, pool: asyncpg.Pool, health: Health, interval_seconds: float, name: str
    ) -> DatabaseProbe:
        async def probe_database() -> None:
            async with pool.acquire(timeout=2.0) as connection:
                await connection.fetchval("SELECT 1")

        await health.set_component(DATABASE, True)
        stopping = asyncio.Event()
        task = asyncio.create_task(
            health.watch(DATABASE, probe_database, interval_seconds, stopping),
            name=f"{name}-health-probe",
        )
        return cls(task, stopping)

    async def stop(self) -> None:
        self.stopping.set()
        await tasks.finish(self.task)


async def close_pool(pool: asyncpg.Pool) -> None:
    """close() waits for every connection to be released; one left mid-query by a call the
    grace cut short must not keep the process from exiting."""
    if not await tasks.bounded(pool.close(), _POOL_CLOSE_SECONDS, "database pool"):
        pool.terminate()


def server_options(config: settings.ServiceSettings) -> list[tuple[str, int]]:
    """The gRPC server's channel options. Connections are aged out (GOAWAY after
    GRPC_MAX_CONNECTION_AGE_SECONDS, calls in flight get the grace): clients balance over the
    headless Service's DNS round-robin and resolve again only when a connection closes, so
    without it replicas started later would never get traffic from long-lived clients."""
    options = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    if config.grpc_max_connection_age_seconds:
        options += [
            ("grpc.max_connection_age_ms", int(config.grpc_max_connection_age_seconds * 1000)),
            (
                "grpc.max_connection_age_grace_ms",
                int(config.grpc_max_connection_age_grace_seconds * 1000),
            ),
        ]
    return options


async def start(service: Service, config: settings.ServiceSettings) -> RunningService:
    """Starts a service and returns once it listens (port 0 picks a free port)."""
    pool = await open_database(config, service.name, service.migrations_package)
    health = Health(service.service_names)
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    public_keys = service_auth.load_public_keys(
        config.service_public_keys, config.service_public_keys_file
    )
    callers = (
        service_auth.CallerPolicy(
            public_keys, getattr(service, "allowed_callers", {}), config.service_trust_domain
        )
        if public_keys is not None or config.service_trust_domain
        else None
    )
    # Bounded by the interceptor, not by grpc.aio's maximum_concurrent_rpcs, which refuses
    # without a reason and refuses health checks too (runtime.admission).
    admission = Admission(config.grpc_max_in_flight, config.grpc_min_deadline_seconds)
    server = grpc.aio.server(
        interceptors=[
            aio_server_interceptor(),  # type: ignore[no-untyped-call]
            ServerInterceptor(service.error_domain, callers, admission),
        ],
        options=server_options(config),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        [
            *service.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        await service.start(server, Resources(config, pool, health))
        address = f"{config.grpc_host}:{config.grpc_port}"
        if config.tls_cert_file:
            port = server.add_secure_port(address, _server_credentials(config))
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise RuntimeError(f"could not bind {config.grpc_host}:{config.grpc_port}")
        await server.start()
    except BaseException:
        # A start that fails half-way leaves no worker, server or connection behind.
        await tasks.bounded(server.stop(0), tasks.STOP_STEP_SECONDS, "grpc server")
        await tasks.bounded(service.stop(), _SERVICE_STOP_SECONDS, service.name)
        pool.terminate()
        raise

    probe = await DatabaseProbe.start(
        pool, health, config.health_probe_interval_seconds, service.name
    )
    logger.info("serving", extra={"port": port, "services": list(service.service_names)})
    return RunningService(service, server, pool, health, port, probe, config, admission)


class Running(Protocol):
    """A started process front (a gRPC server, the edge's HTTP server)."""

    @property
    def listening_on(self) -> str:
        """Where it listens, for the start-up line."""

    async def stop(self, grace: float | None = None) -> None:
        """Drains: not ready first, in-flight work gets the grace, then everything closes."""


async def serve_until_signalled(
    name: str, config: settings.ServiceSettings, start: Callable[[], Awaitable[Running]]
) -> None:
    """Starts, runs until SIGTERM or SIGINT, then drains; a drain past the shutdown deadline
    ends the process."""
    running = await start()
    freeze_start_up_objects()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(f"{name} listening on {running.listening_on}", flush=True)
    await stopping.wait()
    logger.info("shutdown requested")
    _exit_if_stuck(
        config.shutdown_deadline_seconds
        or config.shutdown_delay_seconds + config.shutdown_grace_seconds + _STOP_MARGIN_SECONDS
    )
    await running.stop()


def freeze_start_up_objects() -> None:
    """Moves everything made while starting (modules, classes, descriptors, clients: 85,000
    objects in the billing gateway after its imports) out of the garbage collector's reach.
    They live as long as the process, and each full collection walked them again: 23 ms of a
    quiet machine's time in which the event loop answers nothing, about once a minute under
    load. What is made after start-up is still collected."""
    gc.collect()
    gc.freeze()


async def serve(service: Service, config: settings.ServiceSettings) -> None:
    """Runs a gRPC service until SIGTERM or SIGINT, then drains."""
    await serve_until_signalled(service.name, config, lambda: start(service, config))


def _exit_if_stuck(seconds: float) -> None:
    """Ends the process if the drain has not finished after ``seconds``: a stuck task must
    not keep a stopping pod (or `make run`) waiting for SIGKILL. The timer thread is a
    daemon, so a normal exit does not wait for it."""

    def give_up() -> None:
        logger.error("shutdown did not finish in time; exiting", extra={"seconds": seconds})
        logging.shutdown()
        os._exit(70)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


class ServiceClass(Protocol[SettingsContraT]):
    """A service's class: it names itself and its migrations before it is built, so the
    ``migrate`` command needs no setting but the database's."""

    name: str
    migrations_package: str

    def __call__(self, config: SettingsContraT, /) -> Service: ...


def run_process(
    name: str,
    migrations_package: str,
    load_config: Callable[[], SettingsT],
    serve_process: Callable[[SettingsT], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
    *,
    serves_metrics: bool = False,
) -> None:
    """``python -m <process> [serve|migrate]`` for every process of the skill, the edge
    included. ``migrate`` reads only the database settings (the migration Job holds no key of
    the service) and applies the migrations as the owner when MIGRATION_DATABASE_URL is set;
    ``serve`` loads ``load_config``, then logs, telemetry, outgoing credentials and
    ``serve_process`` on uvloop. ``serves_metrics``: the process serves its metrics on its
    own HTTP port (the edge's ``/metrics``) besides any METRICS_PORT."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    command = parser.parse_args(argv).command
    if command == "migrate":
        database_only = settings.load(settings.ServiceSettings)
        logs.configure(name, database_only.log_level)
        applied = asyncio.run(
            database.migrate_url(database_only.migration_dsn(), name, migrations_package)
        )
        logger.info("migrations applied", extra={"versions": applied})
        return
    config = load_config()
    logs.configure(name, config.log_level)
    telemetry.configure(
        name,
        config.otel_exporter_otlp_endpoint,
        config.metrics_port,
        serves_metrics=serves_metrics,
    )
    clients.configure_from_settings(name, config)
    try:
        import uvloop

        uvloop.run(serve_process(config))
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        asyncio.run(serve_process(config))


def main(
    settings_class: type[SettingsT],
    service_class: ServiceClass[SettingsT],
    argv: Sequence[str] | None = None,
) -> None:
    """The entry point of ``python -m <service> [serve|migrate]`` of a gRPC service."""

    async def serve_service(config: SettingsT) -> None:
        await serve(service_class(config), config)

    run_process(
        service_class.name,
        service_class.migrations_package,
        lambda: settings.load(settings_class),
        serve_service,
        argv,
    )
