"""The local OIDC provider's code exchange: PKCE S256 verified, codes single-use and bound
to their redirect URI, only the console's loopback callback, and the tokens it issues are
what the services accept as an admin's."""

from __future__ import annotations

import asyncio
import secrets
import urllib.parse

import jwt
import pytest
from starlette.testclient import TestClient

from devstack.oidc_provider import CLIENT_ID, LocalOidcProvider, s256
from runtime import errors, jwks, testing
from runtime.auth import AdminRules, AdminVerifier

CALLBACK = "http://127.0.0.1:41234/auth/callback"


def _client() -> TestClient:
    provider = LocalOidcProvider(testing.TEST_ADMIN_PROVIDER, base_url="http://testserver")
    return TestClient(provider.app())


def _authorize(client: TestClient, verifier: str, **changes: str) -> tuple[int, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "admin": "admin-a",
        **changes,
    }
    answer = client.post("/authorize", data=params, follow_redirects=False)
    if answer.status_code != 303:
        return answer.status_code, ""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["state-1"]
    return 303, query["code"][0]


def _exchange(client: TestClient, code: str, verifier: str, redirect_uri: str = CALLBACK) -> dict:  # type: ignore[type-arg]
    answer = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        },
    )
    body: dict = answer.json()  # type: ignore[type-arg]
    body["status"] = answer.status_code
    return body


def test_the_code_exchanges_once_with_the_right_verifier() -> None:
    client = _client()
    verifier = secrets.token_urlsafe(48)
    status, code = _authorize(client, verifier)
    assert status == 303
    assert _exchange(client, code, secrets.token_urlsafe(48))["error"] == "invalid_grant"
    # The failed attempt spent the code: the right verifier is too late now.
    assert _exchange(client, code, verifier)["error"] == "invalid_grant"
    status, code = _authorize(client, verifier)
    assert _exchange(client, code, verifier, "http://127.0.0.1:1/auth/callback")["status"] == 400
    status, code = _authorize(client, verifier)
    tokens = _exchange(client, code, verifier)
    assert tokens["status"] == 200 and tokens["token_type"] == "Bearer"
    assert _exchange(client, code, verifier)["error"] == "invalid_grant"
    id_claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (id_claims["aud"], id_claims["nonce"], id_claims["sub"]) == (
        CLIENT_ID,
        "nonce-1",
        "admin-a",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "https://evil.example/auth/callback"},
        {"redirect_uri": "http://127.0.0.1:41234/elsewhere"},
        {"client_id": "someone-else"},
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
        {"state": ""},
        {"scope": "profile"},
        {"admin": "", "typed": "<script>"},
    ],
)
def test_a_request_off_the_rules_gets_no_code(change: dict[str, str]) -> None:
    status, code = _authorize(_client(), secrets.token_urlsafe(48), **change)
    assert status == 400 and code == ""


def test_the_access_token_is_an_admins_as_the_services_verify_it() -> None:
    client = _client()
    verifier = secrets.token_urlsafe(48)
    _, code = _authorize(client, verifier)
    tokens = _exchange(client, code, verifier)
    rules = AdminRules(
        testing.TEST_ADMIN_ISSUER,
        "askvault-admin",
        "roles",
        "askvault-admin",
        "askvault_workspaces",
        12 * 3600,
    )
    verifier_ = AdminVerifier(rules, jwks.KeySet(jwks.file_loader(testing.TEST_ADMIN_JWKS_FILE)))
    assert asyncio.run(verifier_.subject(tokens["access_token"], "ws_any")) == "admin-a"
    # The ID token is for the console only: no service takes it as an admin's.
    with pytest.raises(errors.ServiceError):
        asyncio.run(verifier_.subject(tokens["id_token"], "ws_any"))
