"""The session cookie is encrypted and authenticated (a changed cookie is no session), and
every POST needs the session's CSRF token."""

from __future__ import annotations

from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from console import sessions

KEY = Fernet.generate_key().decode()


async def _remember(request: Request) -> Response:
    request.session["token"] = "the-admins-access-token"
    return PlainTextResponse(sessions.csrf_token(request))


async def _show(request: Request) -> Response:
    return JSONResponse(dict(request.session))


async def _change(request: Request) -> Response:
    form = await sessions.checked_form(request)
    request.session["changed"] = form.get("value", "")
    return PlainTextResponse("changed")


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code)


def _client(keys: str = KEY, secure: bool = False) -> TestClient:
    app = Starlette(
        routes=[
            Route("/remember", _remember),
            Route("/show", _show),
            Route("/change", _change, methods=["POST"]),
        ],
        exception_handlers={HTTPException: _refused},
    )
    return TestClient(
        sessions.EncryptedSessions(app, sessions.fernet(keys), 3600, secure),
        base_url="https://testserver" if secure else "http://testserver",
    )


def _replace_cookie(client: TestClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set(sessions.COOKIE, value)


def test_the_cookie_is_encrypted_http_only_and_same_site_lax() -> None:
    client = _client(secure=True)
    answer = client.get("/remember")
    header = answer.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    assert "the-admins-access-token" not in header
    assert client.get("/show").json()["token"] == "the-admins-access-token"


def test_a_changed_or_foreign_cookie_is_no_session() -> None:
    client = _client()
    client.get("/remember")
    sealed = client.cookies[sessions.COOKIE]
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    _replace_cookie(client, tampered)
    assert client.get("/show").json() == {}
    # Sealed under another key (another deployment's): nothing either.
    other = _client(Fernet.generate_key().decode())
    _replace_cookie(other, sealed)
    assert other.get("/show").json() == {}


def test_a_rotated_key_still_opens_the_sessions_sealed_before() -> None:
    old = _client()
    old.get("/remember")
    sealed = old.cookies[sessions.COOKIE]
    rotated = _client(f"{Fernet.generate_key().decode()},{KEY}")
    _replace_cookie(rotated, sealed)
    assert rotated.get("/show").json()["token"] == "the-admins-access-token"


def test_a_post_needs_the_sessions_csrf_token() -> None:
    client = _client()
    token = client.get("/remember").text
    missing = client.post("/change", data={"value": "x"})
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = client.post("/change", data={"value": "x", "csrf_token": token[:-1] + "!"})
    assert wrong.status_code == 403
    assert "changed" not in client.get("/show").json()
    done = client.post("/change", data={"value": "x", "csrf_token": token})
    assert done.status_code == 200
    assert client.get("/show").json()["changed"] == "x"
    # Another browser (no session) with a token it saw elsewhere: refused.
    stranger = _client()
    assert stranger.post("/change", data={"csrf_token": token}).status_code == 403
