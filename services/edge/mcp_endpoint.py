"""The /mcp endpoint, its MCP server (``mcp_server``: the SDK, some 20 MB of imports) built
and its session manager started on the first MCP request, not at the edge's start: an edge
no MCP client calls does not carry the SDK. The first request waits for the manager to run,
then is served as every later one."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from edge.confirmations import Confirmations
from edge.http_api import Edge
from runtime import tasks


class McpEndpoint:
    """An ASGI app that starts the MCP server on first use; ``stop`` ends it if started."""

    def __init__(self, edge: Edge, confirmations: Confirmations) -> None:
        self._edge = edge
        self._confirmations = confirmations
        self._app: ASGIApp | None = None
        self._starting = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app if self._app is not None else await self._start()
        await app(scope, receive, send)

    async def _start(self) -> ASGIApp:
        async with self._starting:
            if self._app is not None:
                return self._app
            mcp_server: Any = importlib.import_module("edge.mcp_server")
            built: tuple[Any, ASGIApp] = mcp_server.build(self._edge, self._confirmations)
            manager, app = built
            started = asyncio.Event()

            async def run() -> None:
                # The manager's task group must be entered and left by one task: its own.
                async with manager.run():
                    started.set()
                    await self._stop.wait()

            task = asyncio.create_task(run(), name="edge-mcp")
            waiter = asyncio.ensure_future(started.wait())
            # A manager that fails to start ends its task instead of setting the event.
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not started.is_set():
                await tasks.finish(waiter)
                await task  # raises the manager's error
                raise RuntimeError("the MCP session manager stopped at start")
            self._task = task
            self._app = app
            return app

    async def stop(self) -> None:
        """Ends the session manager (if a request started it)."""
        self._stop.set()
        if self._task is not None:
            await tasks.finish(self._task)
