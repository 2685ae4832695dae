"""Service keys for tests: one Ed25519 key per service of the skill, made once per test
process, and what tests build from them (the JWKS setting, credentials, call metadata)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping

from runtime import clients, service_auth

SERVICES = ("identity", "policy", "notifier", "billing_gateway", "edge")


@functools.cache
def signing_key(key_id: str) -> service_auth.SigningKey:
    """The test key of ``key_id`` (``billing_gateway``, or ``billing_gateway:2`` for a
    rotation's second key); the same object for the whole test process."""
    return service_auth.SigningKey.generate(key_id)


def public_keys(*key_ids: str) -> str:
    """SERVICE_PUBLIC_KEYS of the given key ids (default: one key of every service)."""
    return json.dumps(service_auth.jwks(signing_key(key_id) for key_id in key_ids or SERVICES))


def metadata(key_id: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a credential signed with the test key of ``key_id``."""
    return ((service_auth.HEADER, service_auth.issue(signing_key(key_id))),)


def outgoing(key_id: str) -> clients.Outgoing:
    """Channels' settings that call as the service of ``key_id`` (``clients.channel``)."""
    return clients.Outgoing(credential=service_auth.CachedCredential(signing_key(key_id)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret: bytes, claims: Mapping[str, object], header: Mapping[str, object]) -> str:
    """An HS256 token made by hand, as an attacker would: PyJWT refuses to HMAC with a PEM
    public key and warns about short secrets."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def unsigned(claims: Mapping[str, object], header: Mapping[str, object]) -> str:
    """A token with ``alg: none`` (or any header) and no signature."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
