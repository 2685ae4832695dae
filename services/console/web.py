"""What every page shares: the signed-in admin, rendering with the nav bar and the CSRF
token, flash messages after a POST, and the routes that check CSRF before their handler."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from console import sessions
from console.backends import Backends, CallFailed
from console.settings import ConsoleSettings
from runtime import errors
from runtime.auth import AdminVerifier

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# The nav bar: (path, label).
NAV = (
    ("/escalations", "Escalations"),
    ("/bounds", "Bounds and confirmation"),
    ("/stripe", "Stripe"),
    ("/audit", "Audit log"),
    ("/recovery", "Recovery"),
    ("/outcomes", "Outcomes"),
    ("/messages", "Messages"),
)


@dataclass(frozen=True)
class Admin:
    """The signed-in admin: the provider's subject and their own access token."""

    subject: str
    token: str
    workspace_id: str


@dataclass
class Console:
    """What the pages use: settings, the services, the admin-token rules."""

    settings: ConsoleSettings
    backends: Backends
    verifier: AdminVerifier


class SignInRequired(Exception):
    """No (valid) session: the browser goes to the sign-in."""


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def admin_of(request: Request) -> Admin:
    """The signed-in admin, checked on every request: the access token still verifies with
    the provider's keys and lists this workspace (so an expired session goes back to sign-in
    before any call; every service checks the same credential again)."""
    console = console_of(request)
    token = request.session.get("token")
    expires = request.session.get("expires_at", 0)
    if not isinstance(token, str) or not token or time.time() >= float(expires):
        request.session.clear()
        raise SignInRequired
    try:
        subject = await console.verifier.subject(token, console.settings.workspace_id)
    except errors.ServiceError as error:
        if error.kind is errors.Kind.UNAVAILABLE:
            raise HTTPException(503, error.message) from None
        request.session.clear()
        raise SignInRequired from None
    return Admin(subject, token, console.settings.workspace_id)


def flash(request: Request, text: str, kind: str = "ok") -> None:
    """A message shown once on the next page (after a POST's redirect)."""
    request.session.setdefault("flash", []).append({"kind": kind, "text": text})


def render(
    request: Request,
    template: str,
    admin: Admin,
    *,
    problems: list[str] | None = None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page with the nav bar, the admin, the CSRF token, flashes and any problems."""
    flashes = request.session.pop("flash", [])
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "nav": NAV,
            "admin": admin,
            "csrf_token": sessions.csrf_token(request),
            "flashes": flashes,
            "problems": problems or [],
            **context,
        },
        status_code=status_code,
    )


Page = Callable[[Request, Admin], Awaitable[Response]]
Action = Callable[[Request, Admin, dict[str, str]], Awaitable[Response]]


def page(path: str, handler: Page) -> Route:
    """A GET page for signed-in admins."""

    async def endpoint(request: Request) -> Response:
        return await handler(request, await admin_of(request))

    return Route(path, endpoint, methods=["GET"])


def action(path: str, handler: Action) -> Route:
    """A POST for signed-in admins: the CSRF token is checked before the handler runs (403
    otherwise); a failed call is flashed and the browser goes back to ``back``."""

    async def endpoint(request: Request) -> Response:
        admin = await admin_of(request)
        form = await sessions.checked_form(request)
        try:
            return await handler(request, admin, form)
        except CallFailed as failure:
            flash(request, failure.text, "error")
            return redirect(form.get("back", "/"))

    return Route(path, endpoint, methods=["POST"])


# A path of the console with its query: no scheme, no host, no backslash (browsers read
# "/\\evil.example" as "//evil.example").
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&+-]*$")


def redirect(path: str) -> RedirectResponse:
    """303 to a path of the console, never elsewhere (``back`` comes from a form)."""
    return RedirectResponse(path if _LOCAL_PATH.match(path) else "/", status_code=303)
