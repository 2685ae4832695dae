"""A policy server for the client package's tests: a real one, on its own database role."""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing

_AUDIT_MAC_KEYS = "t1:cG9saWN5LWNsaWVudC10ZXN0LWF1ZGl0LW1hYy1rZXktMDEyMzQ1Njc4OWFi"


async def _no_identity_keys() -> Mapping[str, Ed25519PublicKey]:
    return {}


async def policy(database_url: str, **values: object) -> tuple[PolicyService, PolicySettings]:
    """A policy service and its settings (``values`` override them: keys, TLS)."""
    settings = testing.make_settings(
        PolicySettings,
        await testing.service_database_url(database_url, "policy"),
        migration_database_url=database_url,
        audit_mac_keys=_AUDIT_MAC_KEYS,
        audit_checkpoint_interval_seconds=3600.0,
        audit_chain_interval_ms=60_000,
        expiry_interval_seconds=3600.0,
        **values,
    )
    return PolicyService(settings, key_source=_no_identity_keys), settings
