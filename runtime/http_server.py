"""The HTTP servers of the edge and the console: uvicorn on a socket bound by the process,
started and drained the same way as the gRPC servers (the process's own signal handlers
drive the drain; every step has a bound)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from runtime import tasks


@dataclass
class HttpServer:
    """A listening uvicorn server."""

    server: uvicorn.Server
    port: int
    serving: asyncio.Task[None]

    async def drain(self, grace: float) -> None:
        """Stops accepting, lets in-flight requests finish within ``grace``, then closes
        whatever is left (a stuck stream cannot hang the stop)."""
        self.server.should_exit = True
        done, _ = await asyncio.wait({self.serving}, timeout=grace)
        if not done:
            self.server.force_exit = True
            await tasks.finish(self.serving)


async def start(
    app: ASGIApp, host: str, port: int, *, name: str, grace_seconds: float, backlog: int = 128
) -> HttpServer:
    """Serves ``app`` and returns once it listens (port 0 picks a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        # No ASGI lifespan: the edge's MCP endpoint runs its manager itself, and uvicorn skips
        # the lifespan's shutdown on a forced exit (a drain past its grace), which would leave
        # its lifespan task waiting for ever.
        lifespan="off",
        timeout_graceful_shutdown=int(grace_seconds),
        # X-Forwarded-For is read by the edge alone, and only from TRUSTED_PROXIES
        # (http_api.Edge.client_address); uvicorn would trust 127.0.0.1 (or
        # FORWARDED_ALLOW_IPS) and let any local client pick its own address.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # The process's own handlers drain the service; uvicorn must not take SIGTERM for itself.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve(sockets=[sock]), name=f"{name}-http")
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError("the HTTP server stopped at start")
        await asyncio.sleep(0.01)
    return HttpServer(server, int(sock.getsockname()[1]), serving)
