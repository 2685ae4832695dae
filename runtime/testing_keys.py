"""Service keys for tests: one Ed25519 key per service of the skill, made once per test
process, and what tests build from them (the JWKS setting, credentials, call metadata)."""

from __future__ import annotations

import functools
import json

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
