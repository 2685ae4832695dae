"""The console as a process: settings, channels to the services, the HTTP server. The
runtime runs it as it runs the edge (``runtime.server``: commands, signals, the shutdown
deadline); it has no database, so its health is only whether it is draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

import uvicorn

from console.app import build_app
from console.backends import Backends
from console.settings import ConsoleSettings
from console.web import Console
from runtime import tasks
from runtime.auth import AdminVerifier
from runtime.health import SHUTTING_DOWN, Health

logger = logging.getLogger(__name__)

NAME = "console"


@dataclass
class RunningConsole:
    """A started console; tests use it directly, ``serve`` waits on signals around it."""

    server: uvicorn.Server
    port: int
    health: Health
    backends: Backends
    _serving: asyncio.Task[None]
    _settings: ConsoleSettings

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
        self.server.should_exit = True
        limit = grace if grace is not None else self._settings.shutdown_grace_seconds
        done, _ = await asyncio.wait({self._serving}, timeout=limit)
        if not done:
            self.server.force_exit = True
            await tasks.finish(self._serving)
        await tasks.bounded(self.backends.close(), tasks.STOP_STEP_SECONDS, "console channels")
        logger.info("stopped", extra={"port": self.port})


async def start(settings: ConsoleSettings) -> RunningConsole:
    """Starts the console and returns once it listens (port 0 picks a free port)."""
    health = Health([])
    await health.set_component(SHUTTING_DOWN, True)
    backends = Backends.open(settings)
    console = Console(settings, backends, AdminVerifier.from_settings(settings))
    app = build_app(console, health)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.http_host, settings.http_port))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # The process's own handlers drain the console; uvicorn must not take SIGTERM for itself.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="console-http")
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError("the HTTP server stopped at start")
        await asyncio.sleep(0.01)
    logger.info("serving", extra={"port": port})
    return RunningConsole(server, port, health, backends, serving, settings)
