"""The admin's session: a cookie encrypted and authenticated with Fernet (AES-CBC plus
HMAC-SHA256, from ``cryptography``), HttpOnly, SameSite=Lax, Secure over HTTPS, with a
maximum age; and the CSRF synchronizer token kept in it.

Starlette's own SessionMiddleware signs its cookie but does not encrypt it, and the session
holds the admin's access token, so this one encrypts. It puts the session where Starlette
(and Authlib's client, which keeps state, nonce and the PKCE verifier there) expects it:
``scope["session"]``, read as ``request.session``.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from http.cookies import SimpleCookie
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

COOKIE = "askvault_console"
CSRF_FIELD = "csrf_token"
# Larger cookies are dropped by browsers (4096 bytes per cookie).
MAX_COOKIE_BYTES = 4000


def fernet(keys: str) -> MultiFernet:
    """The cookie's keys: comma-separated Fernet keys, the first encrypts, all decrypt."""
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    if not parts:
        raise ValueError("SESSION_KEYS must hold at least one Fernet key")
    return MultiFernet([Fernet(part.encode()) for part in parts])


class EncryptedSessions:
    """ASGI middleware: decrypts the session cookie into ``scope["session"]`` and writes it
    back, encrypted, when the request changed it (an empty session deletes the cookie)."""

    def __init__(self, app: ASGIApp, keys: MultiFernet, max_age: int, secure: bool) -> None:
        self._app = app
        self._keys = keys
        self._max_age = max_age
        self._secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        loaded = self._load(scope)
        scope["session"] = dict(loaded)
        had_cookie = bool(loaded)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                session: dict[str, Any] = scope["session"]
                headers = MutableHeaders(scope=message)
                sealed = self._seal(session) if session and session != loaded else ""
                if len(sealed) > MAX_COOKIE_BYTES:
                    # Browsers drop such a cookie; keep the one they have instead.
                    logger.warning("session too large to keep", extra={"bytes": len(sealed)})
                elif sealed:
                    headers.append("Set-Cookie", self._cookie(sealed, self._max_age))
                elif not session and had_cookie:
                    headers.append("Set-Cookie", self._cookie("", 0))
            await send(message)

        await self._app(scope, receive, send_with_cookie)

    def _load(self, scope: Scope) -> dict[str, Any]:
        for name, value in scope.get("headers", ()):
            if name != b"cookie":
                continue
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # noqa: S112 - a malformed Cookie header is no session
                continue
            if COOKIE not in cookie:
                continue
            try:
                data = json.loads(self._keys.decrypt(cookie[COOKIE].value.encode(), self._max_age))
            except (InvalidToken, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
        return {}

    def _seal(self, session: dict[str, Any]) -> str:
        return self._keys.encrypt(json.dumps(session, separators=(",", ":")).encode()).decode()

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
        if self._secure:
            parts.append("Secure")
        return "; ".join(parts)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use): every form carries it back."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form, once its CSRF token matches the session's; 403 otherwise (nothing
    is read or changed by the handler then)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not expected
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise HTTPException(403, "The form's CSRF token is missing or wrong: reload the page.")
    return {key: value for key, value in form.items() if isinstance(value, str)}
