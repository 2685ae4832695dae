"""Admin credentials: JWTs that the workspace's identity provider signs (OIDC: Keycloak, Dex,
Okta, Entra ID, ...), sent as ``authorization: Bearer <token>`` and verified against the
provider's published public keys. No service holds a key that can make one.

A credential is an admin's when it verifies with one of the provider's keys (asymmetric
algorithms only), names the configured issuer and audience, carries ``sub``, ``iat`` and
``exp`` with a bounded lifetime, holds the admin role in the role claim, and lists the
workspace in the workspaces claim (an exact list; ``"*"`` stands for every workspace).
The subject is what the two-admin rule compares: two approvals need two people the
provider knows, not two names one key holder typed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from runtime import errors, jwks
from runtime.settings import ServiceSettings

# Asymmetric algorithms only: with HS256 the verifier's key would also sign, and a public key
# read from the JWKS could be used as an HMAC secret (algorithm confusion).
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Clock skew tolerated on iat and exp, in seconds.
LEEWAY_SECONDS = 30
# In the workspaces claim: an admin of every workspace (the operator's own staff).
EVERY_WORKSPACE = "*"


@dataclass(frozen=True)
class AdminRules:
    """What an admin credential must say, from the ADMIN_* settings."""

    issuer: str
    audience: str
    role_claim: str
    role: str
    workspaces_claim: str
    max_lifetime_seconds: int

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> AdminRules:
        return cls(
            issuer=settings.admin_issuer,
            audience=settings.admin_audience,
            role_claim=settings.admin_role_claim,
            role=settings.admin_role,
            workspaces_claim=settings.admin_workspaces_claim,
            max_lifetime_seconds=settings.admin_token_max_lifetime_seconds,
        )


def key_set_from_settings(settings: ServiceSettings) -> jwks.KeySet | None:
    """The provider's keys: ADMIN_JWKS_FILE, else ADMIN_JWKS_URL, else the issuer's OIDC
    discovery document; None when no issuer is configured (admin RPCs are then refused)."""
    if not settings.admin_issuer:
        return None
    if settings.admin_jwks_file:
        return jwks.KeySet(jwks.file_loader(settings.admin_jwks_file))
    if settings.admin_jwks_url:
        return jwks.KeySet(jwks.url_loader(settings.admin_jwks_url))
    return jwks.KeySet(jwks.discovery_loader(settings.admin_issuer))


def _refused(detail: str) -> errors.ServiceError:
    return errors.ServiceError(errors.Kind.UNAUTHENTICATED, "ADMIN_REQUIRED", detail)


def _denied(detail: str) -> errors.ServiceError:
    return errors.ServiceError(errors.Kind.PERMISSION_DENIED, "ADMIN_REQUIRED", detail)


def claim_at(claims: Mapping[str, Any], path: str) -> object:
    """A claim by name, or by dotted path when no claim has that exact name (Keycloak puts
    realm roles at ``realm_access.roles``; namespaced claims such as
    ``https://example.com/workspaces`` contain dots of their own)."""
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _holds(value: object, wanted: str) -> bool:
    if isinstance(value, str):
        return value == wanted
    return isinstance(value, list) and wanted in value


class AdminVerifier:
    """Checks admin credentials against the provider's keys and the rules."""

    def __init__(self, rules: AdminRules, keys: jwks.KeySet | None) -> None:
        self._rules = rules
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> AdminVerifier:
        return cls(AdminRules.from_settings(settings), key_set_from_settings(settings))

    async def subject(self, token: str, workspace_id: str) -> str:
        """The admin's subject, or raises UNAUTHENTICATED / PERMISSION_DENIED (UNAVAILABLE
        when the provider's keys cannot be read)."""
        if self._keys is None or not token:
            raise _refused("an admin credential is required")
        claims = await self._verified_claims(self._keys, token)
        rules = self._rules
        lifetime = claims["exp"] - claims["iat"]
        if not isinstance(lifetime, int) or lifetime > rules.max_lifetime_seconds:
            raise _refused(
                f"an admin credential may live at most {rules.max_lifetime_seconds} seconds"
            )
        if not _holds(claim_at(claims, rules.role_claim), rules.role):
            raise _denied("the credential is not an admin's")
        workspaces = claim_at(claims, rules.workspaces_claim)
        # An exact list of workspace ids: a string would match as a substring ("ws_demo" in
        # "ws_demo_other"), so anything but a list of strings is refused, and so is a
        # credential without the claim (a provider mapper that forgot it must not make
        # everyone an admin of every workspace).
        if (
            not isinstance(workspaces, list)
            or not all(isinstance(item, str) for item in workspaces)
            or (workspace_id not in workspaces and EVERY_WORKSPACE not in workspaces)
        ):
            raise _denied("not an admin of this workspace")
        return str(claims["sub"])

    async def subject_of_call(
        self, metadata: Iterable[tuple[str, str | bytes]] | None, workspace_id: str
    ) -> str:
        """The admin subject of a call's metadata (``context.invocation_metadata()``)."""
        return await self.subject(bearer_from_metadata(metadata), workspace_id)

    async def _verified_claims(self, keys: jwks.KeySet, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refused("invalid admin credential") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise _refused("admin credentials must be signed by the identity provider's key")
        key_id = header.get("kid", "")
        try:
            key = await keys.key(key_id if isinstance(key_id, str) else "")
        except jwks.KeysUnavailable:
            raise errors.ServiceError(
                errors.Kind.UNAVAILABLE,
                "ADMIN_KEYS_UNAVAILABLE",
                "the identity provider's keys cannot be read; try again shortly",
            ) from None
        # The key decides the algorithm: a token may not pick a weaker or different one.
        if key is None or key.algorithm_name != algorithm:
            raise _refused("the credential is not signed by a key of the identity provider")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self._rules.audience,
                issuer=self._rules.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_iat": True},
            )
        except jwt.PyJWTError:
            raise _refused("invalid admin credential") from None
        return claims


def bearer_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The bearer token of an ``authorization`` metadata entry, or empty."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""
