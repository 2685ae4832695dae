"""Sign-in with the admin identity provider: OpenID Connect authorization code with PKCE
(S256), by Authlib's Starlette client, which keeps state, nonce and the code verifier in the
session, checks the state on return, exchanges the code with the verifier, and verifies the
ID token (signature from the provider's JWKS, issuer, audience, expiry, nonce). The access
token it returns is what the console sends to the services; it is checked against the same
admin rules the services apply before the session starts."""

from __future__ import annotations

import logging
import time

from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import sessions
from console.settings import ConsoleSettings
from console.web import TEMPLATES, console_of
from runtime import errors

logger = logging.getLogger(__name__)

CLIENT = "admin_idp"


def oauth_client(settings: ConsoleSettings) -> OAuth:
    """The registered provider client (discovery read on first use)."""
    oauth = OAuth()
    secret = settings.oidc_client_secret.get_secret_value()
    oauth.register(
        CLIENT,
        client_id=settings.oidc_client_id,
        client_secret=secret or None,
        server_metadata_url=settings.oidc_discovery_url,
        client_kwargs={
            "scope": settings.oidc_scopes,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
        },
    )
    return oauth


def _refused(request: Request, text: str, status_code: int) -> Response:
    return TEMPLATES.TemplateResponse(
        request, "signed_out.html", {"problem": text}, status_code=status_code
    )


async def signin(request: Request) -> Response:
    """Sends the browser to the provider's authorization endpoint."""
    console = console_of(request)
    public = console.settings.public_url
    redirect_uri = f"{public}/auth/callback" if public else str(request.url_for("callback"))
    client = request.app.state.oauth.create_client(CLIENT)
    # One sign-in at a time: states of abandoned attempts would grow the cookie.
    for key in [key for key in request.session if key.startswith("_state_")]:
        del request.session[key]
    try:
        response: Response = await client.authorize_redirect(request, redirect_uri)
    except Exception as error:  # the provider's discovery could not be read
        logger.warning("identity provider unreachable", extra={"error": type(error).__name__})
        return _refused(request, "The identity provider cannot be reached; try again.", 503)
    return response


async def callback(request: Request) -> Response:
    """The provider's answer: state, code exchange (PKCE), ID token with nonce; then the
    access token must be an admin's of this workspace."""
    console = console_of(request)
    client = request.app.state.oauth.create_client(CLIENT)
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as error:
        logger.info("sign-in refused", extra={"error": error.error})
        return _refused(request, f"Sign-in failed: {error.error}. Start again.", 400)
    access_token = str(token.get("access_token", ""))
    claims = token.get("userinfo") or {}
    try:
        subject = await console.verifier.subject(access_token, console.settings.workspace_id)
    except errors.ServiceError as error:
        return _refused(request, f"Not an admin of this workspace: {error.message}", 403)
    if claims.get("sub") != subject:
        return _refused(request, "The ID token and the access token name two people.", 403)
    expires_at = float(token.get("expires_at") or time.time() + 300)
    request.session.clear()
    request.session.update(
        {
            "token": access_token,
            "sub": subject,
            "expires_at": min(expires_at, time.time() + console.settings.session_max_age_seconds),
        }
    )
    sessions.csrf_token(request)
    return RedirectResponse("/escalations", status_code=303)


async def signout(request: Request) -> Response:
    """Ends the session (POST with the CSRF token, so no other site can sign one out)."""
    await sessions.checked_form(request)
    request.session.clear()
    return RedirectResponse("/signed-out", status_code=303)


async def signed_out(request: Request) -> Response:
    return TEMPLATES.TemplateResponse(request, "signed_out.html", {"problem": ""})


async def home(request: Request) -> Response:
    return RedirectResponse("/escalations", status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/signin", signin, methods=["GET"]),
        Route("/auth/callback", callback, methods=["GET"], name="callback"),
        Route("/signout", signout, methods=["POST"]),
        Route("/signed-out", signed_out, methods=["GET"]),
    ]
