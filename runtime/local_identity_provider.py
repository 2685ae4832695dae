"""A stand-in for the workspace's identity provider where there is none: the local stack
(``make run``) and the tests. It holds an Ed25519 signing key, publishes the public half as
a JWKS file that the services read (ADMIN_JWKS_FILE), and signs admin credentials shaped as
a real provider's access tokens (issuer, audience, roles, workspaces, iat, exp).

Only tooling holds it; no service is ever given the private key.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEFAULT_AUDIENCE = "askvault-admin"
DEFAULT_ROLE = "askvault-admin"


class LocalIdentityProvider:
    """Signs admin credentials with one key; ``jwks()`` is what verifiers read."""

    def __init__(
        self,
        issuer: str,
        private_key: Ed25519PrivateKey,
        key_id: str,
        audience: str = DEFAULT_AUDIENCE,
    ) -> None:
        self.issuer = issuer
        self.key_id = key_id
        self.audience = audience
        self._private_key = private_key

    @classmethod
    def generate(cls, issuer: str, key_id: str) -> LocalIdentityProvider:
        return cls(issuer, Ed25519PrivateKey.generate(), key_id)

    @classmethod
    def load_or_create(cls, directory: Path, issuer: str) -> LocalIdentityProvider:
        """The provider whose key is kept in ``directory`` (made on first use, mode 0600),
        with its JWKS written beside it as ``jwks.json``."""
        key_file = directory / "signing-key.pem"
        if not key_file.exists():
            directory.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
        private_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError(f"{key_file} is not an Ed25519 key")
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        provider = cls(issuer, private_key, key_id=f"local-{public[:6].hex()}")
        provider.write_jwks(directory / "jwks.json")
        return provider

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(
            jwt.algorithms.OKPAlgorithm.to_jwk(self._private_key.public_key())
        )
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "EdDSA"})
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def write_jwks(self, path: Path, *also: LocalIdentityProvider) -> None:
        """Writes the key set (this key, then ``also``'s: a rotation overlap) atomically."""
        keys = [self.public_jwk(), *(other.public_jwk() for other in also)]
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps({"keys": keys}, indent=2))
        partial.replace(path)

    def issue(
        self,
        subject: str,
        workspaces: Iterable[str] = ("*",),
        ttl_seconds: int = 3600,
        **overrides: Any,
    ) -> str:
        """An admin credential as the provider would sign it: the admin role, the given
        workspaces; ``overrides`` replace claims (None leaves a claim out)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_seconds,
            "roles": [DEFAULT_ROLE],
            "askvault_workspaces": list(workspaces),
        }
        claims.update(overrides)
        present = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(
            present, self._private_key, algorithm="EdDSA", headers={"kid": self.key_id}
        )

    def private_pem(self) -> str:
        """The private key (tests check it never appears in logs or tables)."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
