"""The HTTP servers of the edge and the console: uvicorn on a socket bound by the process,
started and drained the same way as the gRPC servers (the process's own signal handlers
drive the drain; every step has a bound), and their requests traced (``trace_requests``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span
from starlette.applications import Starlette
from starlette.routing import Match
from starlette.types import ASGIApp, Scope

from runtime import tasks

# Requests no trace is made for: probes and scrapes, every few seconds, say nothing of a
# caller's request (matched against the URL without its query).
UNTRACED_PATHS = ("/healthz", "/readyz", "/metrics")


def trace_requests(app: Starlette) -> None:
    """Makes every request to ``app`` a SERVER span (HTTP semantic conventions, named by the
    route's template: "POST /v1/tools/{name}", the URL reduced to it) that continues the
    caller's ``traceparent``.
    OpenTelemetry's ASGI middleware, given here rather than by the Starlette instrumentor,
    which cannot leave out paths per application nor the spans it makes per body message.
    Its own request metrics are off: each process counts its requests itself (the edge's
    ``askvault_edge_http_*``), and a second histogram per request would cost without use."""
    routes = app.routes

    def template(scope: Scope) -> str | None:
        for route in routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", ""))
        return None

    def span_details(scope: Scope) -> tuple[str, dict[str, str]]:
        method = str(scope.get("method", "HTTP"))
        route = template(scope)
        if route is None:
            return method, {}
        return f"{method} {route}", {"http.route": route}

    def hide_url(span: Span, scope: Scope) -> None:
        # A path or a query may hold a secret (a confirmation link's token, WhatsApp's
        # hub.verify_token, an OAuth code): the span keeps the route's template, no query.
        if not span.is_recording():
            return
        route = template(scope) or "/"
        present = getattr(span, "attributes", None) or {}
        for key in ("http.target", "url.path"):
            if key in present:
                span.set_attribute(key, route)
        if "url.query" in present:
            span.set_attribute("url.query", "")
        url = present.get("http.url") or present.get("url.full")
        if isinstance(url, str):
            parts = urlsplit(url)
            hidden = urlunsplit((parts.scheme, parts.netloc, route, "", ""))
            span.set_attribute("http.url" if "http.url" in present else "url.full", hidden)

    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
        default_span_details=span_details,
        server_request_hook=hide_url,
        exclude_spans=["receive", "send"],
        meter_provider=NoOpMeterProvider(),
    )


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
