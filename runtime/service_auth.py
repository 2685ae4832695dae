"""Service credentials: which of the skill's services is calling.

When ``SERVICE_TOKEN_SECRET`` is set, every call between services carries
``x-askvault-service: <HS256 JWT naming the caller>`` and each server refuses RPCs from
services that are not allowed to call them (health and reflection stay open for probes;
admin RPCs are called by people with an admin credential, which the servicer checks).
This is the signed-credential option; mutual TLS (``TLS_CLIENT_CA_FILE``) is the other, and
both can be on at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt

from runtime import errors

HEADER = "x-askvault-service"
AUDIENCE = "askvault-internal"
# In an allow-list: the RPC is called by admins with their own credential, not by services.
ADMIN = "admin"
# The key of an allow-list entry that applies to every RPC without its own entry.
EVERY_RPC = "*"
_OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")


def issue(secret: str, service_name: str, ttl_seconds: int = 600) -> str:
    """A credential for one of the skill's services."""
    now = int(time.time())
    claims = {"sub": service_name, "aud": AUDIENCE, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")


class CachedCredential:
    """A credential re-issued when half its life is gone, so calls don't sign each time."""

    def __init__(self, secret: str, service_name: str, ttl_seconds: int = 600) -> None:
        self._secret = secret
        self._service_name = service_name
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = issue(self._secret, self._service_name, self._ttl)
            self._renew_at = now + self._ttl / 2
        return self._token


@dataclass(frozen=True)
class CallerPolicy:
    """Which services may call which RPC of a server: ``{"Redeem": {"billing_gateway"},
    "*": {"edge", "billing_gateway"}}``; method names without the service prefix."""

    secret: str
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def check(self, full_method: str, metadata: object) -> str:
        """The caller's name, or raises UNAUTHENTICATED / PERMISSION_DENIED. Open services
        and admin RPCs answer ""."""
        service, _, method = full_method.lstrip("/").partition("/")
        if service.startswith(_OPEN_SERVICES):
            return ""
        allowed = self.allowed.get(method, self.allowed.get(EVERY_RPC, frozenset()))
        if ADMIN in allowed:
            return ""
        token = _header(metadata)
        if not token:
            raise errors.ServiceError(
                errors.Kind.UNAUTHENTICATED,
                "SERVICE_CREDENTIAL_REQUIRED",
                "a service credential is required",
            )
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            raise errors.ServiceError(
                errors.Kind.UNAUTHENTICATED,
                "SERVICE_CREDENTIAL_REQUIRED",
                "the service credential does not verify",
            ) from None
        caller = str(claims["sub"])
        if caller not in allowed:
            raise errors.ServiceError(
                errors.Kind.PERMISSION_DENIED,
                "CALLER_NOT_ALLOWED",
                f"{caller} may not call {method}",
                metadata={"caller": caller},
            )
        return caller


def _header(metadata: object) -> str:
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == HEADER and isinstance(value, str):
            return value
    return ""
