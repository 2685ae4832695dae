"""Public keys of an identity provider (a JWKS), read from a file, a URL, or the URL the
issuer's OpenID discovery document names; cached, and read again when a token names a key
not seen yet (the provider rotated its keys).

A re-read caused by an unknown key id happens at most once per ``min_refresh_seconds``: a
stream of tokens with made-up key ids must not make every call wait on the provider. When
the provider cannot be reached, the keys already read keep serving (a provider outage does
not lock admins out of a running service); with no keys at all the caller is told the keys
are unavailable, which is not the same as "your token is bad".

PyJWT's ``PyJWKClient`` does the caching but fetches synchronously (it would block the
event loop) and re-fetches on every unknown key id, hence this small class around its
``PyJWKSet``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import jwt

logger = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 5.0
# Largest JWKS or discovery document read, in bytes.
MAX_DOCUMENT_BYTES = 256 * 1024

Loader = Callable[[], Awaitable[bytes]]


class KeysUnavailable(Exception):
    """No key set could be read and none is cached."""


def file_loader(path: str) -> Loader:
    """Reads a JWKS file (the local stack's provider, or one a deployment mounts)."""

    async def load() -> bytes:
        return await asyncio.to_thread(Path(path).read_bytes)

    return load


def url_loader(url: str) -> Loader:
    """Fetches a JWKS over HTTPS (plain HTTP only from this machine)."""
    require_safe_url(url)

    async def load() -> bytes:
        return await _fetch(url)

    return load


def discovery_loader(issuer: str) -> Loader:
    """Fetches the JWKS that the issuer's ``/.well-known/openid-configuration`` names. The
    document must name the same issuer (OpenID Connect Discovery, section 4.3), so a document
    served from elsewhere cannot point us at someone else's keys."""
    require_safe_url(issuer)
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"

    async def load() -> bytes:
        document = json.loads(await _fetch(discovery_url))
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise KeysUnavailable(f"{discovery_url} does not describe the issuer {issuer}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable(f"{discovery_url} names no jwks_uri")
        require_safe_url(jwks_uri)
        return await _fetch(jwks_uri)

    return load


def require_safe_url(url: str) -> None:
    """HTTPS, or HTTP to a loopback address (a provider on the same machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError(f"identity provider URL must be https: {url}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _fetch(url: str) -> bytes:
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        if response.status != 200:
            raise KeysUnavailable(f"{url} answered {response.status}")
        body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise KeysUnavailable(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        return body


def parse_key_set(document: bytes) -> dict[str, jwt.PyJWK]:
    """Signing keys of a JWKS by key id; keys for encryption, keys of unsupported types and
    symmetric keys (a JWKS publishes public keys; an ``oct`` key would let anyone who reads
    the set sign) are left out."""
    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeysUnavailable("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[str(entry.get("kid", ""))] = key
    if not keys:
        raise KeysUnavailable("the JWKS holds no usable signing key")
    return keys


class KeySet:
    """The provider's signing keys by key id, read through ``load``."""

    def __init__(
        self,
        load: Loader,
        *,
        max_age_seconds: float = 600.0,
        min_refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._read_at: float | None = None
        # When a first read failed: calls meanwhile are refused at once, not each sent to the
        # provider (a flood of admin calls during an outage must not become a flood of reads).
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, key_id: str) -> jwt.PyJWK | None:
        """The key of that id (a token without one: the only key), or None when the
        provider does not publish it. Raises KeysUnavailable when no key set can be read."""
        now = self._clock()
        failed_at = self._failed_at
        if self._read_at is None and failed_at is not None and now - failed_at < self._min_refresh:
            raise KeysUnavailable("the identity provider's keys could not be read")
        if self._read_at is None or now - self._read_at >= self._max_age:
            await self._refresh(stale_ok=self._read_at is not None)
        found = self._find(key_id)
        read_at = self._read_at
        if found is None and read_at is not None and self._clock() - read_at >= self._min_refresh:
            await self._refresh(stale_ok=True)
            found = self._find(key_id)
        return found

    def _find(self, key_id: str) -> jwt.PyJWK | None:
        if key_id:
            return self._keys.get(key_id)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self, *, stale_ok: bool) -> None:
        async with self._lock:
            started = self._clock()
            if self._read_at is not None and started - self._read_at < self._min_refresh:
                return  # another call read them meanwhile
            try:
                self._keys = parse_key_set(await self._load())
            except (
                KeysUnavailable,
                OSError,
                ValueError,
                aiohttp.ClientError,
                TimeoutError,
            ) as error:
                if not stale_ok:
                    self._failed_at = started
                    raise KeysUnavailable(str(error)) from None
                logger.warning(
                    "identity provider keys could not be read again; the cached ones serve",
                    extra={"error": str(error)},
                )
                # Try again only after the refresh interval, not on every call.
            self._read_at = started
