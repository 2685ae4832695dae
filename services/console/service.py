"""The console as a process: settings, channels to the services, the HTTP server. The
runtime runs it as it runs the edge (``runtime.server``: commands, signals, the shutdown
deadline); it has no database, so its health is only whether it is draining."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from console.app import build_app
from console.backends import Backends
from console.settings import ConsoleSettings
from console.web import Console
from runtime import http_server, tasks
from runtime.auth import AdminVerifier
from runtime.health import SHUTTING_DOWN, Health
from runtime.http_server import HttpServer

logger = logging.getLogger(__name__)

NAME = "console"


@dataclass
class RunningConsole:
    """A started console; tests use it directly, ``serve`` waits on signals around it."""

    http: HttpServer
    health: Health
    backends: Backends
    _settings: ConsoleSettings

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listening_on(self) -> str:
        return self.url

    async def stop(self, grace: float | None = None) -> None:
        """Drains: /readyz answers 503 first, in-flight requests finish, then it closes."""
        await self.health.set_component(SHUTTING_DOWN, False)
        if self._settings.shutdown_delay_seconds:
            await asyncio.sleep(self._settings.shutdown_delay_seconds)
        await self.http.drain(grace if grace is not None else self._settings.shutdown_grace_seconds)
        await tasks.bounded(self.backends.close(), tasks.STOP_STEP_SECONDS, "console channels")
        logger.info("stopped", extra={"port": self.port})


async def start(settings: ConsoleSettings) -> RunningConsole:
    """Starts the console and returns once it listens (port 0 picks a free port)."""
    health = Health([])
    await health.set_component(SHUTTING_DOWN, True)
    backends = Backends.open(settings)
    console = Console(settings, backends, AdminVerifier.from_settings(settings))
    app = build_app(console, health)
    http = await http_server.start(
        app,
        settings.http_host,
        settings.http_port,
        name=NAME,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    logger.info("serving", extra={"port": http.port})
    return RunningConsole(http, health, backends, settings)
