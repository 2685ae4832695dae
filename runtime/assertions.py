"""Identity assertions: short-lived EdDSA (Ed25519) JWTs that identity signs after verifying
a visitor, and that policy and the billing gateway verify with identity's public keys.

The format is shared here so that issuer and verifiers can never drift apart; only identity
holds a private key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ISSUER = "askvault-identity"
AUDIENCE = "askvault-services"
ALGORITHM = "EdDSA"
# Clock skew tolerated between identity and the verifier, in seconds.
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Assertion:
    """What identity vouches for."""

    assertion_id: str
    workspace_id: str
    contact_id: str
    user_id: str
    email: str
    stripe_customer_id: str
    issued_at: datetime
    expires_at: datetime


class AssertionRefused(Exception):
    """An assertion that must not be trusted; ``reason`` is an ErrorReason / DecisionReason
    name: IDENTITY_REQUIRED, ASSERTION_INVALID, ASSERTION_EXPIRED or WORKSPACE_MISMATCH."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def issue(private_key: Ed25519PrivateKey, key_id: str, assertion: Assertion) -> str:
    """Signs an assertion (identity only)."""
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": assertion.assertion_id,
        "sub": assertion.contact_id,
        "ws": assertion.workspace_id,
        "uid": assertion.user_id,
        "email": assertion.email,
        "cus": assertion.stripe_customer_id,
        "iat": int(assertion.issued_at.timestamp()),
        "exp": int(assertion.expires_at.timestamp()),
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": key_id})


def verify(
    token: str,
    workspace_id: str,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    now: float | None = None,
) -> Assertion:
    """Checks signature, issuer, audience, expiry and workspace; raises AssertionRefused."""
    if not token:
        raise AssertionRefused("IDENTITY_REQUIRED", "no identity assertion")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AssertionRefused("ASSERTION_INVALID", "malformed assertion") from None
    key = keys.get(str(header.get("kid", "")))
    if key is None or header.get("alg") != ALGORITHM:
        raise AssertionRefused("ASSERTION_INVALID", "unknown assertion key")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "jti"], "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        raise AssertionRefused("ASSERTION_EXPIRED", "assertion expired") from None
    except jwt.PyJWTError:
        raise AssertionRefused("ASSERTION_INVALID", "assertion does not verify") from None
    if now is not None and claims["exp"] + LEEWAY_SECONDS < now:
        raise AssertionRefused("ASSERTION_EXPIRED", "assertion expired")
    if claims.get("ws") != workspace_id:
        raise AssertionRefused("WORKSPACE_MISMATCH", "assertion is for another workspace")
    return Assertion(
        assertion_id=str(claims["jti"]),
        workspace_id=str(claims["ws"]),
        contact_id=str(claims["sub"]),
        user_id=str(claims.get("uid", "")),
        email=str(claims.get("email", "")),
        stripe_customer_id=str(claims.get("cus", "")),
        issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )


KeyFetcher = Callable[[], Awaitable[Mapping[str, Ed25519PublicKey]]]


class Verifier:
    """Verifies assertions with keys fetched from identity, cached and refreshed when an
    unknown key id appears (at most once per ``refresh_interval`` seconds)."""

    def __init__(self, fetch_keys: KeyFetcher, refresh_interval: float = 10.0) -> None:
        self._fetch_keys = fetch_keys
        self._refresh_interval = refresh_interval
        self._keys: Mapping[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def verify(self, token: str, workspace_id: str) -> Assertion:
        """Verifies one assertion, refreshing the keys if its key id is not known yet."""
        if not token:
            raise AssertionRefused("IDENTITY_REQUIRED", "no identity assertion")
        try:
            kid = str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.PyJWTError:
            raise AssertionRefused("ASSERTION_INVALID", "malformed assertion") from None
        if kid not in self._keys:
            await self._refresh()
        return verify(token, workspace_id, self._keys)

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._refresh_interval and self._keys:
                return
            self._keys = await self._fetch_keys()
            self._fetched_at = time.monotonic()


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes."""
    return Ed25519PublicKey.from_public_bytes(raw)
