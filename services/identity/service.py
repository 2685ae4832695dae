"""Identity as the runtime starts it: keys from settings, the servicer on the server."""

from __future__ import annotations

import base64

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from identity.grpc_api import IdentityServicer
from identity.settings import IdentitySettings
from runtime.secretbox import SecretBox
from runtime.server import Resources
from runtime.service_auth import ADMIN, EVERY_RPC


def parse_signing_keys(spec: str) -> list[tuple[str, Ed25519PrivateKey]]:
    """ "a2:<base64 seed>,a1:<base64 seed>" -> [(key id, private key)], current first."""
    keys = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, _, seed = item.partition(":")
        raw = base64.b64decode(seed)
        if not key_id or len(raw) != 32:
            raise ValueError("each signing key must be '<id>:<base64 of a 32-byte seed>'")
        keys.append((key_id, Ed25519PrivateKey.from_private_bytes(raw)))
    if not keys:
        raise ValueError("at least one assertion signing key is required")
    return keys


class IdentityService:
    """The identity service for the runtime."""

    name = "identity"
    migrations_package = "identity.migrations"
    error_domain = "identity.askvault.dev"
    service_names = (identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,)
    # Who may call which RPC when service credentials are on (SERVICE_PUBLIC_KEYS).
    allowed_callers = {
        EVERY_RPC: frozenset({"edge", "policy", "billing_gateway"}),
        "UpdateTags": frozenset({"billing_gateway"}),
        "AddSecret": frozenset({ADMIN}),
        "RetireSecret": frozenset({ADMIN}),
        "ListSecrets": frozenset({ADMIN}),
        "GetWorkspaceSettings": frozenset({ADMIN}),
        "UpdateWorkspaceSettings": frozenset({ADMIN}),
        "ListLegacyBindings": frozenset({ADMIN}),
    }

    def __init__(self, settings: IdentitySettings) -> None:
        self._settings = settings
        self._secret_box = SecretBox(settings.secrets_encryption_keys.get_secret_value())
        self._signing_keys = parse_signing_keys(settings.assertion_signing_keys.get_secret_value())

    async def start(self, server: grpc.aio.Server, resources: Resources) -> None:
        servicer = IdentityServicer(
            pool=resources.pool,
            settings=self._settings,
            secret_box=self._secret_box,
            signing_keys=self._signing_keys,
        )
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)

    async def stop(self) -> None:
        """Identity has no background workers."""
