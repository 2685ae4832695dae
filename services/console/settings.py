"""The console's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from runtime.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    """Everything of ServiceSettings (the console has no database and serves HTTP, so the
    database and gRPC fields are unused; ADMIN_* say which access tokens are an admin's), plus
    the HTTP server, the identity provider the admins sign in with, the session cookie and
    the services it calls."""

    # The console keeps no data: no database (DATABASE_URL may stay unset).
    database_url: SecretStr = SecretStr("")
    migrate_on_start: bool = False
    # Address the HTTP server binds; port 0 picks a free port (tests).
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8081, ge=0, le=65535)
    # The address admins' browsers reach the console at ("https://console.example.com");
    # the OIDC redirect URI is <public_url>/auth/callback. Empty: the address each request
    # came to (local use).
    public_url: str = ""
    # The workspace this console administers (an admin's token must list it, or "*").
    workspace_id: str = Field(min_length=1, max_length=64)
    # The admin identity provider: its OpenID discovery document, and the console's client
    # there (a public client with PKCE; a secret is sent only when set).
    oidc_discovery_url: str = Field(min_length=1)
    oidc_client_id: str = "askvault-console"
    oidc_client_secret: SecretStr = SecretStr("")
    # Scopes asked for at sign-in.
    oidc_scopes: str = "openid profile"
    # Keys that encrypt and sign the session cookie: comma-separated Fernet keys (urlsafe
    # base64 of 32 bytes), the first encrypts, all decrypt (rotation). Required.
    session_keys: SecretStr
    # How long a signed-in session lasts at most, in seconds (never past the access token).
    session_max_age_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86400)
    # host:port of each service the console calls, and the edge's base URL (outcomes).
    policy_target: str = "127.0.0.1:50062"
    billing_target: str = "127.0.0.1:50063"
    notifier_target: str = "127.0.0.1:50064"
    edge_url: str = "http://127.0.0.1:8080"
    # The edge's public address, which Stripe delivers webhooks to (the connect form's default
    # webhook URL is <edge_public_url>/api/stripe/webhooks/<workspace>); empty: EDGE_URL.
    edge_public_url: str = ""
    # Deadline of each call to a service, in seconds.
    rpc_deadline_seconds: float = Field(default=10.0, gt=0)

    @field_validator("public_url", "edge_url", "edge_public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure whenever the console is reached over HTTPS."""
        return self.public_url.startswith("https://")
