"""Admin credentials come from an identity provider: verified against its published keys
(a file, a URL, or OIDC discovery over real HTTP), with issuer, audience, lifetime, role
and an exact workspace list checked; nothing a service holds can sign one."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime import auth, errors, jwks
from runtime.local_identity_provider import LocalIdentityProvider

ISSUER = "https://id.example.test/realms/askvault"
WORKSPACE = "ws_demo"

RULES = auth.AdminRules(
    issuer=ISSUER,
    audience="askvault-admin",
    role_claim="roles",
    role="askvault-admin",
    workspaces_claim="askvault_workspaces",
    max_lifetime_seconds=12 * 3600,
)


def _verifier(provider: LocalIdentityProvider, tmp_path: Path, **rules: Any) -> auth.AdminVerifier:
    path = tmp_path / "jwks.json"
    provider.write_jwks(path)
    chosen = auth.AdminRules(**{**RULES.__dict__, **rules})
    return auth.AdminVerifier(chosen, jwks.KeySet(jwks.file_loader(str(path))))


def _provider(key_id: str = "key-1") -> LocalIdentityProvider:
    return LocalIdentityProvider.generate(ISSUER, key_id)


async def _reason(verifier: auth.AdminVerifier, token: str, workspace: str = WORKSPACE) -> str:
    with pytest.raises(errors.ServiceError) as refused:
        await verifier.subject(token, workspace)
    return f"{refused.value.kind.name}/{refused.value.reason}"


async def test_a_providers_credential_names_the_admin(tmp_path: Path) -> None:
    provider = _provider()
    verifier = _verifier(provider, tmp_path)
    assert await verifier.subject(provider.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"
    assert await verifier.subject(provider.issue("operator", ["*"]), "ws_other") == "operator"
    metadata = (("authorization", f"Bearer {provider.issue('bob', [WORKSPACE])}"),)
    assert await verifier.subject_of_call(metadata, WORKSPACE) == "bob"


def _hs256_with_public_key(provider: LocalIdentityProvider, claims: dict[str, Any]) -> str:
    """Algorithm confusion: HMAC keyed with the public key a verifier reads from the JWKS."""
    public_x = provider.public_jwk()["x"]
    header = {"alg": "HS256", "typ": "JWT", "kid": provider.key_id}

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    import hashlib
    import hmac

    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(public_x.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _claims(subject: str = "mallory", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "askvault-admin",
        "sub": subject,
        "iat": now,
        "exp": now + 600,
        "roles": ["askvault-admin"],
        "askvault_workspaces": [WORKSPACE],
    }
    claims.update(extra)
    return {key: value for key, value in claims.items() if value is not None}


OLD_SHARED_SECRET = "test-admin-token-secret-0123456789abcdef"


def _refused_tokens(provider: LocalIdentityProvider) -> dict[str, str]:
    now = int(time.time())
    impostor = LocalIdentityProvider.generate(ISSUER, provider.key_id)  # same kid, other key
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "signed by another key under the provider's key id": impostor.issue("mallory"),
        "the old shared-secret HS256 scheme": jwt.encode(
            {
                "sub": "mallory",
                "role": "admin",
                "aud": "askvault-admin",
                "iat": now,
                "exp": now + 600,
            },
            OLD_SHARED_SECRET,
            algorithm="HS256",
        ),
        "HS256 keyed with the published public key": _hs256_with_public_key(provider, _claims()),
        "alg none": jwt.encode(_claims(), key="", algorithm="none"),
        "RS256 under the Ed25519 key's id": jwt.encode(
            _claims(), rsa_key, algorithm="RS256", headers={"kid": provider.key_id}
        ),
        "another issuer": provider.issue("mallory", iss="https://evil.example/"),
        "another audience": provider.issue("mallory", aud="some-other-api"),
        "no iat": provider.issue("mallory", iat=None),
        "a thirty-year lifetime": provider.issue("mallory", ttl_seconds=30 * 365 * 86400),
        "issued in the future": provider.issue("mallory", iat=now + 3600, exp=now + 7200),
        "expired": provider.issue("mallory", ttl_seconds=-120),
        "no admin role": provider.issue("mallory", roles=["viewer"]),
        "the role as a substring": provider.issue("mallory", roles="askvault-admin-viewer"),
        "workspaces as a string": provider.issue(
            "mallory", askvault_workspaces="ws_demo_other ws_demo"
        ),
        "no workspaces claim": provider.issue("mallory", askvault_workspaces=None),
        "nested workspace list": provider.issue("mallory", askvault_workspaces=[[WORKSPACE]]),
        "another workspace": provider.issue("mallory", ["ws_demo_other"]),
        "garbage": "not.a.jwt",
        "empty": "",
    }


@pytest.mark.parametrize(
    "case",
    [
        "signed by another key under the provider's key id",
        "the old shared-secret HS256 scheme",
        "HS256 keyed with the published public key",
        "alg none",
        "RS256 under the Ed25519 key's id",
        "another issuer",
        "another audience",
        "no iat",
        "a thirty-year lifetime",
        "issued in the future",
        "expired",
        "no admin role",
        "the role as a substring",
        "workspaces as a string",
        "no workspaces claim",
        "nested workspace list",
        "another workspace",
        "garbage",
        "empty",
    ],
)
async def test_credentials_the_provider_did_not_sign_for_this_workspace_are_refused(
    tmp_path: Path, case: str
) -> None:
    provider = _provider()
    verifier = _verifier(provider, tmp_path)
    token = _refused_tokens(provider)[case]
    outcome = await _reason(verifier, token)
    assert outcome.endswith("/ADMIN_REQUIRED"), outcome


async def test_keycloak_realm_roles_and_a_custom_workspaces_claim(tmp_path: Path) -> None:
    provider = _provider()
    verifier = _verifier(
        provider,
        tmp_path,
        role_claim="realm_access.roles",
        workspaces_claim="https://askvault.example/workspaces",
    )
    claims: dict[str, Any] = {
        "realm_access": {"roles": ["askvault-admin"]},
        "roles": None,
        "https://askvault.example/workspaces": [WORKSPACE],
    }
    token = provider.issue("kc-user", **claims)
    assert await verifier.subject(token, WORKSPACE) == "kc-user"
    flat = provider.issue("kc-user", [WORKSPACE])  # roles at the top level: not this realm's
    assert (await _reason(verifier, flat)).startswith("PERMISSION_DENIED")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _counting_file_loader(path: Path) -> tuple[jwks.Loader, list[int]]:
    reads: list[int] = []
    load = jwks.file_loader(str(path))

    async def counted() -> bytes:
        reads.append(1)
        return await load()

    return counted, reads


async def test_a_rotated_key_is_picked_up_and_made_up_key_ids_do_not_storm_the_provider(
    tmp_path: Path,
) -> None:
    old, new = _provider("key-old"), _provider("key-new")
    path = tmp_path / "jwks.json"
    old.write_jwks(path)
    clock = _Clock()
    loader, reads = _counting_file_loader(path)
    keys = jwks.KeySet(loader, max_age_seconds=600, min_refresh_seconds=30, clock=clock)
    verifier = auth.AdminVerifier(RULES, keys)
    assert await verifier.subject(old.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"
    assert len(reads) == 1

    # A hundred tokens with made-up key ids within the refresh interval: one read at most.
    for index in range(100):
        forged = LocalIdentityProvider.generate(ISSUER, f"made-up-{index}").issue("m")
        await _reason(verifier, forged)
    assert len(reads) == 1

    # The provider rotates: the new key is published beside the old one.
    old.write_jwks(path, new)
    clock.now += 31
    assert await verifier.subject(new.issue("bob", [WORKSPACE]), WORKSPACE) == "bob"
    assert len(reads) == 2
    # The old key leaves the set; after the cache's age it is no longer trusted.
    new.write_jwks(path)
    clock.now += 601
    assert (await _reason(verifier, old.issue("alice", [WORKSPACE]))).startswith("UNAUTHENTICATED")


async def test_an_unreachable_provider_keeps_the_cached_keys_and_says_unavailable_without_them(
    tmp_path: Path,
) -> None:
    provider = _provider()
    path = tmp_path / "jwks.json"
    provider.write_jwks(path)
    clock = _Clock()
    keys = jwks.KeySet(jwks.file_loader(str(path)), clock=clock)
    verifier = auth.AdminVerifier(RULES, keys)
    assert await verifier.subject(provider.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"
    path.unlink()
    clock.now += 601
    assert await verifier.subject(provider.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"

    never_read = auth.AdminVerifier(
        RULES, jwks.KeySet(jwks.file_loader(str(tmp_path / "missing.json")))
    )
    outcome = await _reason(never_read, provider.issue("alice", [WORKSPACE]))
    assert outcome == "UNAVAILABLE/ADMIN_KEYS_UNAVAILABLE"


async def test_an_unreachable_provider_is_asked_once_per_interval_not_once_per_call(
    tmp_path: Path,
) -> None:
    provider = _provider()
    path = tmp_path / "jwks.json"
    clock = _Clock()
    loader, reads = _counting_file_loader(path)  # the file does not exist yet
    verifier = auth.AdminVerifier(RULES, jwks.KeySet(loader, min_refresh_seconds=30, clock=clock))
    for _ in range(20):
        outcome = await _reason(verifier, provider.issue("alice", [WORKSPACE]))
        assert outcome == "UNAVAILABLE/ADMIN_KEYS_UNAVAILABLE"
    assert len(reads) == 1
    provider.write_jwks(path)
    clock.now += 31
    assert await verifier.subject(provider.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"
    assert len(reads) == 2


async def test_no_issuer_configured_refuses_every_admin_call(tmp_path: Path) -> None:
    provider = _provider()
    verifier = auth.AdminVerifier(RULES, None)
    outcome = await _reason(verifier, provider.issue("alice", [WORKSPACE]))
    assert outcome == "UNAUTHENTICATED/ADMIN_REQUIRED"


def test_a_jwks_never_lends_a_symmetric_or_encryption_key() -> None:
    provider = _provider()
    document = {
        "keys": [
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
            {**provider.public_jwk(), "kid": "enc", "use": "enc"},
            provider.public_jwk(),
        ]
    }
    keys = jwks.parse_key_set(json.dumps(document).encode())
    assert set(keys) == {provider.key_id}


@pytest.fixture
async def provider_site() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A real HTTP server on this machine answering as an OIDC provider; the dict holds
    what it serves (tests change it)."""
    served: dict[str, Any] = {}

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(served["discovery"])

    async def key_set(_: web.Request) -> web.Response:
        return web.json_response(served["jwks"])

    app = web.Application()
    app.router.add_get("/realms/askvault/.well-known/openid-configuration", discovery)
    app.router.add_get("/realms/askvault/certs", key_set)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        await runner.cleanup()


async def test_keys_from_oidc_discovery_over_http(
    provider_site: tuple[str, dict[str, Any]],
) -> None:
    base, served = provider_site
    issuer = f"{base}/realms/askvault"
    provider = LocalIdentityProvider.generate(issuer, "kc-1")
    served["discovery"] = {"issuer": issuer, "jwks_uri": f"{issuer}/certs"}
    served["jwks"] = provider.jwks()
    rules = auth.AdminRules(**{**RULES.__dict__, "issuer": issuer})
    verifier = auth.AdminVerifier(rules, jwks.KeySet(jwks.discovery_loader(issuer)))
    assert await verifier.subject(provider.issue("alice", [WORKSPACE]), WORKSPACE) == "alice"

    # A discovery document naming another issuer is not trusted for its keys.
    served["discovery"] = {"issuer": "https://evil.example/", "jwks_uri": f"{issuer}/certs"}
    impostor = auth.AdminVerifier(rules, jwks.KeySet(jwks.discovery_loader(issuer)))
    outcome = await _reason(impostor, provider.issue("alice", [WORKSPACE]))
    assert outcome == "UNAVAILABLE/ADMIN_KEYS_UNAVAILABLE"

    # A JWKS URL configured directly.
    direct = auth.AdminVerifier(rules, jwks.KeySet(jwks.url_loader(f"{issuer}/certs")))
    assert await direct.subject(provider.issue("carol", [WORKSPACE]), WORKSPACE) == "carol"


def test_provider_urls_must_be_https_except_on_this_machine() -> None:
    for url in ("http://id.example.com/realms/x", "ftp://id.example.com/", "file:///etc/jwks"):
        with pytest.raises(ValueError, match="https"):
            jwks.require_safe_url(url)
    for url in ("https://id.example.com/", "http://127.0.0.1:8080/x", "http://localhost/x"):
        jwks.require_safe_url(url)


def test_the_local_provider_keeps_its_key_private_and_stable(tmp_path: Path) -> None:
    first = LocalIdentityProvider.load_or_create(tmp_path / "idp", ISSUER)
    again = LocalIdentityProvider.load_or_create(tmp_path / "idp", ISSUER)
    assert first.key_id == again.key_id
    key_file = tmp_path / "idp" / "signing-key.pem"
    assert key_file.stat().st_mode & 0o077 == 0
    published = (tmp_path / "idp" / "jwks.json").read_text()
    assert "PRIVATE" not in published and '"d"' not in published
    loaded = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
