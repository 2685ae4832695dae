"""Identity's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from runtime.settings import EncryptionKeys, ServiceSettings


class IdentitySettings(ServiceSettings):
    """Everything of ServiceSettings, plus identity's keys."""

    grpc_port: int = Field(default=50061, ge=0, le=65535)
    # Keys that encrypt HMAC secrets at rest: "k2:<base64 32 bytes>,k1:..."; first is current.
    secrets_encryption_keys: EncryptionKeys
    # Ed25519 seeds that sign identity assertions: "a2:<base64 32 bytes>,a1:..."; the first
    # signs, all are published by GetVerificationKeys so that rotation breaks nothing.
    assertion_signing_keys: SecretStr
    # Lifetime of an identity assertion, in seconds.
    assertion_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    # Clock skew tolerated on visitor tokens' exp and iat, in seconds.
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Longest lifetime (exp - iat) a visitor token may claim, in seconds.
    token_max_lifetime_seconds: int = Field(default=86_400, ge=60)
    # How long decrypted workspace secrets are served from memory, in seconds: a secret added
    # or retired through another replica is seen within this bound (at once in the replica
    # that did it). 0 reads and decrypts them on every verification.
    secret_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    # Most (workspace, purpose) entries kept in that cache; the least recently used go first.
    secret_cache_max_entries: int = Field(default=10_000, ge=1)
