"""Admin credentials: HS256 JWTs with ``role: admin`` signed with the shared admin key,
sent as ``authorization: Bearer <token>``. The subject names the admin, which is what the
two-admin rule compares; an optional ``workspaces`` claim (an exact list) limits where it is
valid; ``iat`` is required and the lifetime bounded."""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt

from runtime import errors

AUDIENCE = "askvault-admin"
# The longest an admin credential may live (exp - iat): a leaked one expires within a shift.
MAX_LIFETIME_SECONDS = 12 * 3600
# Clock skew tolerated on iat and exp, in seconds.
LEEWAY_SECONDS = 30


def issue_admin_token(
    secret: str, subject: str, workspaces: Iterable[str] | None = None, ttl_seconds: int = 3600
) -> str:
    """A credential for an admin (used by tooling, tests and the local stack)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "role": "admin",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if workspaces is not None:
        claims["workspaces"] = list(workspaces)
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The bearer token of an ``authorization`` metadata entry, or empty."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def require_admin(token: str, secret: str, workspace_id: str) -> str:
    """Returns the admin's subject, or raises UNAUTHENTICATED / PERMISSION_DENIED."""
    if not secret or not token:
        raise errors.ServiceError(
            errors.Kind.UNAUTHENTICATED, "ADMIN_REQUIRED", "an admin credential is required"
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "role"], "verify_iat": True},
        )
    except jwt.PyJWTError:
        raise errors.ServiceError(
            errors.Kind.UNAUTHENTICATED, "ADMIN_REQUIRED", "invalid admin credential"
        ) from None
    lifetime = claims["exp"] - claims["iat"]
    if not isinstance(lifetime, int) or lifetime > MAX_LIFETIME_SECONDS:
        raise errors.ServiceError(
            errors.Kind.UNAUTHENTICATED,
            "ADMIN_REQUIRED",
            f"an admin credential may live at most {MAX_LIFETIME_SECONDS} seconds",
        )
    if claims.get("role") != "admin":
        raise errors.ServiceError(
            errors.Kind.PERMISSION_DENIED, "ADMIN_REQUIRED", "the credential is not an admin's"
        )
    allowed = claims.get("workspaces")
    # An exact list of workspace ids: a string would match as a substring ("ws_demo" in
    # "ws_demo_other"), so anything but a list of strings is refused.
    if allowed is not None and (
        not isinstance(allowed, list)
        or not all(isinstance(item, str) for item in allowed)
        or workspace_id not in allowed
    ):
        raise errors.ServiceError(
            errors.Kind.PERMISSION_DENIED, "ADMIN_REQUIRED", "not an admin of this workspace"
        )
    return str(claims["sub"])


def admin_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None, secret: str, workspace_id: str
) -> str:
    """The admin subject of a call's metadata (``context.invocation_metadata()``), or raises
    UNAUTHENTICATED / PERMISSION_DENIED."""
    return require_admin(bearer_from_metadata(metadata), secret, workspace_id)
