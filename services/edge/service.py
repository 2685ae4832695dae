"""The edge as a process: settings, database (its schema migrated), channels to the four
services, the HTTP server. The runtime runs it as it runs the gRPC services
(``runtime.server``: commands, signals, the shutdown deadline, the database pool and its
health probe); only the HTTP server is the edge's own. /readyz reads the same health
components the gRPC services publish."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from edge import ratelimit
from edge.access import ContentAccess
from edge.confirmations import Confirmations
from edge.http_api import Edge, build_app
from edge.mcp_endpoint import McpEndpoint
from edge.outcomes_api import OutcomesEndpoint
from edge.peers import Peers
from edge.pipeline import Engine
from edge.settings import EdgeSettings
from edge.whatsapp_webhook import WhatsAppWebhook
from runtime import http_server, tasks
from runtime.health import SHUTTING_DOWN
from runtime.http_server import HttpServer
from runtime.server import DatabaseProbe, close_pool, open_database

logger = logging.getLogger(__name__)

NAME = "edge"
MIGRATIONS = "edge.migrations"


@dataclass
class RunningEdge:
    """A started edge; tests use it directly, ``serve`` waits on signals around it."""

    edge: Edge
    pool: asyncpg.Pool
    peers: Peers
    http: HttpServer
    _probe: DatabaseProbe
    _mcp: McpEndpoint
    _settings: EdgeSettings

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        """Base URL (loopback form for local clients)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def listening_on(self) -> str:
        return self.url

    async def stop(self, grace: float | None = None) -> None:
        """Drains: /readyz answers 503 first, in-flight requests finish, then everything closes.
        Every step has a bound (``runtime.tasks``): a stuck stream cannot hang the stop."""
        await self.edge.health.set_component(SHUTTING_DOWN, False)
        if self._settings.shutdown_delay_seconds:
            await asyncio.sleep(self._settings.shutdown_delay_seconds)
        await self.http.drain(grace if grace is not None else self._settings.shutdown_grace_seconds)
        await self._mcp.stop()
        await self._probe.stop()
        await tasks.bounded(self.peers.close(), tasks.STOP_STEP_SECONDS, "edge channels")
        await close_pool(self.pool)
        logger.info("stopped", extra={"port": self.port})


async def start(settings: EdgeSettings) -> RunningEdge:
    """Starts the edge and returns once it listens (port 0 picks a free port)."""
    pool = await open_database(settings, NAME, MIGRATIONS)
    peers = Peers(settings)
    engine = Engine(
        settings, pool, peers, limits=ratelimit.TurnLimits.from_settings(settings, pool)
    )
    edge = Edge(settings, engine, peers, pool)
    confirmations = Confirmations(edge)
    # Started on the first MCP request (the SDK is imported then, not here).
    mcp = McpEndpoint(edge, confirmations)
    whatsapp = WhatsAppWebhook(edge)
    access = ContentAccess(edge)
    outcomes = OutcomesEndpoint(edge)
    app = build_app(
        edge,
        mcp,
        [*confirmations.routes(), *whatsapp.routes(), *access.routes(), *outcomes.routes()],
    )
    http = await http_server.start(
        app,
        settings.http_host,
        settings.http_port,
        name=NAME,
        grace_seconds=settings.shutdown_grace_seconds,
        backlog=512,
    )

    probe = await DatabaseProbe.start(
        pool, edge.health, settings.health_probe_interval_seconds, NAME
    )
    logger.info("serving", extra={"port": http.port})
    return RunningEdge(
        edge,
        pool,
        peers,
        http,
        probe,
        mcp,
        settings,
    )
