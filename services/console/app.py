"""The console's HTTP surface: sign-in, the pages (one module each), health, static files,
and the errors every page shares (a sign-in redirect, a clear message, never a trace)."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console import display, sessions, signin
from console.pages import audit, bounds, escalations, messages, outcomes, recovery, stripe
from console.web import TEMPLATES, Console, SignInRequired
from runtime import http_server
from runtime.health import SHUTTING_DOWN, Health

logger = logging.getLogger(__name__)

display.install(TEMPLATES.env)

# No script, no frames, forms only to the console itself.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)


async def _sign_in(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/signin", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": exc.status_code, "text": exc.detail},
        status_code=exc.status_code,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", extra={"path": request.url.path})
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": 500, "text": "Something went wrong in the console; nothing more was done."},
        status_code=500,
    )


def build_app(console: Console, health: Health) -> ASGIApp:
    """The ASGI app: the pages behind the encrypted session and the security headers."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        draining = not health.components().get(SHUTTING_DOWN, True)
        ready = health.serving
        return JSONResponse(
            {"ready": ready, "draining": draining}, status_code=200 if ready else 503
        )

    routes: list[BaseRoute] = [
        *signin.routes(),
        *escalations.routes(),
        *bounds.routes(),
        *stripe.routes(),
        *audit.routes(),
        *recovery.routes(),
        *outcomes.routes(),
        *messages.routes(),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Mount(
            "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"
        ),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            SignInRequired: _sign_in,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    # Inside the session and header wrappers: the span is named by the matched route.
    http_server.trace_requests(app)
    app.state.console = console
    app.state.oauth = signin.oauth_client(console.settings)
    settings = console.settings
    return SecurityHeaders(
        sessions.EncryptedSessions(
            app,
            sessions.fernet(settings.session_keys.get_secret_value()),
            settings.session_max_age_seconds,
            settings.secure_cookies,
        )
    )
