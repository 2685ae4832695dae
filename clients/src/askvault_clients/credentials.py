"""The service credential: a short-lived EdDSA JWT naming the calling service, signed with
its own Ed25519 key, sent as ``x-askvault-service`` metadata.

The same format as the servers verify (``runtime/service_auth.py`` in the services'
repository): header ``{"alg": "EdDSA", "kid": "<service>[:<label>]"}``, claims ``sub`` (the
service the key id names), ``aud`` ``askvault-internal``, ``iat`` and ``exp`` at most ten
minutes apart. This package does not import the runtime (which brings the servers'
dependencies: asyncpg, OpenTelemetry, pydantic-settings); a test checks that tokens made here
verify with the runtime's verifier.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

HEADER = "x-askvault-service"
AUDIENCE = "askvault-internal"
ALGORITHM = "EdDSA"
# The longest lifetime a server accepts.
TTL_SECONDS = 600

_KEY_ID = re.compile(r"^([a-z][a-z0-9_]{0,62})(?::([A-Za-z0-9._-]{1,64}))?$")


def service_of(key_id: str) -> str:
    """The service a key id speaks for (``edge:2`` -> ``edge``); ValueError when malformed."""
    match = _KEY_ID.match(key_id)
    if match is None:
        raise ValueError(f"key id {key_id!r} is not <service> or <service>:<label>")
    return match.group(1)


@dataclass(frozen=True)
class SigningKey:
    """The caller's own private key and the id its public key has in the servers' JWKS."""

    key_id: str
    private_key: ed25519.Ed25519PrivateKey

    @property
    def service(self) -> str:
        return service_of(self.key_id)

    @classmethod
    def from_pem(cls, pem: str | bytes, key_id: str) -> SigningKey:
        """Raises ValueError unless ``pem`` is an unencrypted Ed25519 private key."""
        service_of(key_id)
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the service signing key must be an Ed25519 key")
        return cls(key_id, key)

    @classmethod
    def from_file(cls, path: str | Path, key_id: str) -> SigningKey:
        return cls.from_pem(Path(path).read_bytes(), key_id)


def issue(key: SigningKey, ttl_seconds: int = TTL_SECONDS) -> str:
    """A credential of the key's service."""
    if not 0 < ttl_seconds <= TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be in 1..{TTL_SECONDS}")
    now = int(time.time())
    claims = {"sub": key.service, "aud": AUDIENCE, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.key_id})


class ServiceCredential:
    """A credential re-issued when half its life is gone, so calls don't sign each time."""

    def __init__(self, key: SigningKey, ttl_seconds: int = TTL_SECONDS) -> None:
        self._key = key
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0
        self._lock = threading.Lock()

    @property
    def service(self) -> str:
        return self._key.service

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            if now >= self._renew_at:
                self._token = issue(self._key, self._ttl)
                self._renew_at = now + self._ttl / 2
            return self._token
