"""X-Hub-Signature-256: ``sha256=`` + hex HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hub-Signature-256"


def sign(body: bytes, app_secret: str) -> str:
    """The header value for a body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, app_secret: str, header_value: str) -> bool:
    """Whether the header value signs the body (constant-time comparison)."""
    return hmac.compare_digest(sign(body, app_secret), header_value or "")
