"""The local stack's admin identity provider over HTTP, for ``make run`` and the tests only:
an OpenID Connect provider with the discovery document, the JWKS, an authorization endpoint
that shows a sign-in form where one picks or types a local admin name (no password: LOCAL
USE ONLY, and the page says so), and a token endpoint that exchanges the code after
verifying PKCE (S256 only). It signs, with ``runtime.local_identity_provider``'s Ed25519
key, the same admin access tokens the services already accept (issuer, audience
askvault-admin, roles, workspaces) and an ID token for the console (audience its client id,
the nonce it sent). The services keep verifying admin tokens against the JWKS file.

Hand-written rather than built on Authlib's server classes: those need a web framework
integration (Flask or Django) plus client, code and token models, more code than this one
client, one key and one grant need; every check a real provider makes on this grant is here
(registered client and redirect URI, single-use codes that expire, the code bound to its
client, redirect URI and PKCE challenge, constant-time comparisons).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import html
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from runtime.local_identity_provider import LocalIdentityProvider

CLIENT_ID = "askvault-console"
# A code works once, within this many seconds.
CODE_TTL_SECONDS = 60
# Lifetime of the tokens issued, in seconds.
TOKEN_TTL_SECONDS = 3600
# The names offered on the sign-in form (any other may be typed).
DEFAULT_ADMINS = ("admin-a", "admin-b")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.@")


@dataclass(frozen=True)
class Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    subject: str
    expires_at: float


def loopback_redirect(uri: str) -> bool:
    """The console's callback on this machine, on any port (RFC 8252, section 7.3):
    http://127.0.0.1:<port>/auth/callback or http://localhost:<port>/auth/callback."""
    parts = urllib.parse.urlsplit(uri)
    return (
        parts.scheme == "http"
        and parts.hostname in {"127.0.0.1", "localhost"}
        and parts.path == "/auth/callback"
        and not parts.query
        and not parts.fragment
    )


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class LocalOidcProvider:
    """The provider's state: its signing key, the URL it is reached at, pending codes."""

    signer: LocalIdentityProvider
    base_url: str = ""
    workspaces: Sequence[str] = ("*",)
    admins: Sequence[str] = DEFAULT_ADMINS
    codes: dict[str, Code] = field(default_factory=dict)

    def discovery(self) -> dict[str, object]:
        return {
            "issuer": self.signer.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "jwks_uri": f"{self.base_url}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile"],
        }

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery, methods=["GET"]),
                Route("/jwks", self._jwks, methods=["GET"]),
                Route("/authorize", self._authorize_form, methods=["GET"]),
                Route("/authorize", self._authorize, methods=["POST"]),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(self.discovery())

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.signer.jwks())

    def _request_problem(self, params: dict[str, str]) -> str:
        if params.get("client_id") != CLIENT_ID:
            return "unknown client_id"
        if not loopback_redirect(params.get("redirect_uri", "")):
            return "redirect_uri is not the console's callback on this machine"
        if params.get("response_type") != "code":
            return "response_type must be code"
        if "openid" not in params.get("scope", "").split():
            return "scope must include openid"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required"
        if not params.get("state"):
            return "state is required"
        return ""

    async def _authorize_form(self, request: Request) -> Response:
        params = dict(request.query_params)
        problem = self._request_problem(params)
        if problem:
            return HTMLResponse(f"<p>Invalid sign-in request: {html.escape(problem)}</p>", 400)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        choices = " ".join(
            f'<button type="submit" name="admin" value="{name}">{name}</button>'
            for name in (html.escape(admin) for admin in self.admins)
        )
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Local sign-in</title></head>
<body style="font-family: system-ui; max-width: 560px; margin: 40px auto">
<h1>Local identity provider</h1>
<p style="background:#fff4ce;padding:8px"><strong>Local development only.</strong> No password:
whoever reaches this page signs in as any admin. Never expose it; a deployment uses the
workspace's own identity provider.</p>
<form method="post" action="/authorize">{hidden}
<p>Sign in as: {choices}</p>
<p><label>or another admin name <input name="typed" id="typed"></label>
<button type="submit" name="admin" value="">Sign in</button></p>
</form></body></html>"""
        return HTMLResponse(page)

    async def _authorize(self, request: Request) -> Response:
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        problem = self._request_problem(params)
        if problem:
            return HTMLResponse(f"<p>Invalid sign-in request: {html.escape(problem)}</p>", 400)
        subject = (params.get("admin") or params.get("typed") or "").strip().lower()
        if not subject or len(subject) > 64 or not set(subject) <= _NAME_CHARS:
            return HTMLResponse("<p>Pick an admin name (a-z, 0-9, - _ . @).</p>", 400)
        code = secrets.token_urlsafe(32)
        self._expire()
        self.codes[code] = Code(
            CLIENT_ID,
            params["redirect_uri"],
            params["code_challenge"],
            params.get("nonce", ""),
            subject,
            time.time() + CODE_TTL_SECONDS,
        )
        query = urllib.parse.urlencode({"code": code, "state": params["state"]})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)

    def _expire(self) -> None:
        now = time.time()
        for code in [c for c, entry in self.codes.items() if entry.expires_at <= now]:
            del self.codes[code]

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        if params.get("grant_type") != "authorization_code":
            return _token_error("unsupported_grant_type")
        self._expire()
        # Single use: the code is gone whatever the outcome of this exchange.
        entry = self.codes.pop(params.get("code", ""), None)
        if entry is None:
            return _token_error("invalid_grant", "unknown, used or expired code")
        if params.get("client_id") != entry.client_id:
            return _token_error("invalid_client")
        if params.get("redirect_uri") != entry.redirect_uri:
            return _token_error("invalid_grant", "redirect_uri differs from the authorization")
        verifier = params.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
            s256(verifier), entry.challenge
        ):
            return _token_error("invalid_grant", "PKCE verification failed")
        access_token = self.signer.issue(entry.subject, self.workspaces, TOKEN_TTL_SECONDS)
        id_token = self.signer.issue(
            entry.subject,
            ttl_seconds=TOKEN_TTL_SECONDS,
            aud=entry.client_id,
            nonce=entry.nonce or None,
            name=entry.subject,
            roles=None,
            askvault_workspaces=None,
        )
        return JSONResponse(
            {
                "access_token": access_token,
                "id_token": id_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL_SECONDS,
            },
            headers={"Cache-Control": "no-store"},
        )


def _token_error(error: str, description: str = "") -> Response:
    body = {"error": error, **({"error_description": description} if description else {})}
    return JSONResponse(body, status_code=400, headers={"Cache-Control": "no-store"})


def main() -> None:
    """``python -m devstack.oidc_provider --port N``: serves the local stack's provider."""
    import uvicorn

    from devstack import config

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    provider = LocalOidcProvider(
        config.admin_provider(), base_url=f"http://{arguments.host}:{arguments.port}"
    )
    uvicorn.run(provider.app(), host=arguments.host, port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
