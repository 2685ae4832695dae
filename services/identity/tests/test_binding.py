"""Binding a contact to a Stripe customer only from facts the workspace signed, and keys
kept apart per protocol (issue 13, items 1 and 4)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, TypeAlias

import asyncpg
import grpc
import jwt
import pytest

from askvault.identity.v1 import identity_pb2 as pb
from askvault.identity.v1 import identity_pb2_grpc
from identity.domain.verification import compute_user_hash
from identity.service import IdentityService
from identity.tests.conftest import identity_settings
from runtime import assertions, database, testing
from runtime.secretbox import SecretBox

# The stub on an aio channel (typed in the generated .pyi only).
Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"
HASH_SECRET = b"h" * 32
TOKEN_SECRET = b"t" * 32
ADMIN = testing.admin_metadata()
WS = "ws_a"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def _add(
    identity: Stub, key_id: str, secret: bytes, purpose: pb.SecretPurpose.ValueType
) -> pb.AddSecretResponse:
    response: pb.AddSecretResponse = await identity.AddSecret(
        pb.AddSecretRequest(
            workspace_id=WS,
            key_id=key_id,
            secret=secret,
            purpose=purpose,
            idempotency_key=f"add-{key_id}",
        ),
        metadata=ADMIN,
    )
    return response


async def _setup(identity: Stub, metadata_key: str = "") -> None:
    await _add(identity, "h1", HASH_SECRET, pb.SECRET_PURPOSE_USER_HASH)
    await _add(identity, "t1", TOKEN_SECRET, pb.SECRET_PURPOSE_VISITOR_TOKEN)
    if metadata_key:
        await identity.UpdateWorkspaceSettings(
            pb.UpdateWorkspaceSettingsRequest(
                workspace_id=WS,
                settings=pb.WorkspaceSettings(customer_metadata_key=metadata_key),
                idempotency_key="settings",
            ),
            metadata=ADMIN,
        )


async def _by_hash(identity: Stub, user_id: str, email: str = "") -> pb.VerifyVisitorResponse:
    response: pb.VerifyVisitorResponse = await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(
            workspace_id=WS,
            user_id=user_id,
            email=email,
            user_hash=compute_user_hash(HASH_SECRET, user_id, email),
        )
    )
    return response


def _token(secret: bytes = TOKEN_SECRET, kid: str = "t1", **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"sub": "u1", "iat": now, "exp": now + 600}
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})


async def _refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    return testing.error_details(failed.value)


def _link(identity: Stub, contact_id: str, key: str, **target: Any) -> Any:
    return identity.LinkCustomer(
        pb.LinkCustomerRequest(
            workspace_id=WS, contact_id=contact_id, idempotency_key=key, **target
        )
    )


async def _assertion_email(identity: Stub, token: str) -> str:
    keys = {
        key.key_id: assertions.public_key_from_raw(key.public_key)
        for key in (await identity.GetVerificationKeys(pb.GetVerificationKeysRequest())).keys
    }
    return assertions.verify(token, WS, keys).email  # type: ignore[arg-type]


async def test_a_user_hash_of_a_crafted_user_id_is_not_a_token(identity: Stub) -> None:
    # Attack: with one secret for both protocols, the user_hash the workspace's backend
    # computes for the user id "<header>.<payload>" is the HS256 signature of a token for any
    # sub. Even a workspace that (wrongly) reuses the material under both purposes is safe:
    # the token must name a token key, and a user_hash key is never one.
    await _add(identity, "k1", HASH_SECRET, pb.SECRET_PURPOSE_USER_HASH)
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64(json.dumps({"sub": "victim", "iat": now, "exp": now + 600}).encode())
    crafted_user_id = f"{header}.{payload}"
    assert len(crafted_user_id) <= 256  # the backend accepts it as a user id
    signature = bytes.fromhex(compute_user_hash(HASH_SECRET, crafted_user_id))
    forged = f"{crafted_user_id}.{_b64(signature)}"
    code, reason, _ = await _refusal(
        identity.VerifyVisitor(pb.VerifyVisitorRequest(workspace_id=WS, token=forged))
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_KEY")
    # With a token key of its own, the forged token still fails: other material.
    await _add(identity, "k2", TOKEN_SECRET, pb.SECRET_PURPOSE_VISITOR_TOKEN)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k2"}).encode())
    crafted_user_id = f"{header}.{payload}"
    signature = bytes.fromhex(compute_user_hash(HASH_SECRET, crafted_user_id))
    code, reason, _ = await _refusal(
        identity.VerifyVisitor(
            pb.VerifyVisitorRequest(workspace_id=WS, token=f"{crafted_user_id}.{_b64(signature)}")
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_secrets_need_a_purpose_and_rotate_per_purpose(identity: Stub) -> None:
    code, _, violations = await _refusal(
        identity.AddSecret(
            pb.AddSecretRequest(
                workspace_id=WS, key_id="k0", secret=HASH_SECRET, idempotency_key="k0"
            ),
            metadata=ADMIN,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "purpose" in violations
    await _setup(identity)
    await _add(identity, "t2", b"T" * 32, pb.SECRET_PURPOSE_VISITOR_TOKEN)
    # Both token keys verify during the rotation; retiring t1 ends only its tokens.
    await identity.VerifyVisitor(pb.VerifyVisitorRequest(workspace_id=WS, token=_token()))
    await identity.RetireSecret(
        pb.RetireSecretRequest(workspace_id=WS, key_id="t1", idempotency_key="r"), metadata=ADMIN
    )
    code, reason, _ = await _refusal(
        identity.VerifyVisitor(pb.VerifyVisitorRequest(workspace_id=WS, token=_token()))
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_KEY")
    await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(workspace_id=WS, token=_token(b"T" * 32, "t2"))
    )
    await _by_hash(identity, "u1")  # the user_hash key is untouched
    listed = await identity.ListSecrets(pb.ListSecretsRequest(workspace_id=WS), metadata=ADMIN)
    assert [(s.key_id, s.purpose, s.active) for s in listed.secrets] == [
        ("h1", pb.SECRET_PURPOSE_USER_HASH, True),
        ("t1", pb.SECRET_PURPOSE_VISITOR_TOKEN, False),
        ("t2", pb.SECRET_PURPOSE_VISITOR_TOKEN, True),
    ]


async def test_an_unsigned_email_is_only_claimed_and_never_binds(identity: Stub) -> None:
    # Attack: mallory proves "mallory" and sends the victim's email.
    await _setup(identity)
    mallory = await _by_hash(identity, "mallory", email="victim@example.com")
    assert (mallory.contact.email, mallory.contact.claimed_email) == ("", "victim@example.com")
    assert await _assertion_email(identity, mallory.identity_assertion) == ""
    assert mallory.customer_lookup == pb.CustomerLookup()  # nothing to search by
    code, reason, _ = await _refusal(
        _link(
            identity,
            mallory.contact.contact_id,
            "m1",
            email_match=pb.EmailMatch(
                candidates=[
                    pb.CustomerCandidate(stripe_customer_id="cus_v", email="victim@example.com")
                ]
            ),
        )
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "EMAIL_NOT_SIGNED")
    after = await identity.GetContact(
        pb.GetContactRequest(workspace_id=WS, contact_id=mallory.contact.contact_id)
    )
    assert after.contact.stripe_customer_id == ""


async def test_a_signed_email_is_never_overwritten_by_an_unsigned_one(identity: Stub) -> None:
    await _setup(identity)
    signed = await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(workspace_id=WS, token=_token(email="ann@example.com"))
    )
    assert signed.contact.email == "ann@example.com"
    assert await _assertion_email(identity, signed.identity_assertion) == "ann@example.com"
    assert signed.customer_lookup.email == "ann@example.com"
    again = await _by_hash(identity, "u1", email="victim@example.com")
    assert (again.contact.email, again.contact.claimed_email) == (
        "ann@example.com",
        "victim@example.com",
    )
    assert await _assertion_email(identity, again.identity_assertion) == "ann@example.com"


async def test_email_identified_visitors_bind_by_their_signed_email(identity: Stub) -> None:
    await _setup(identity)
    ann = await _by_hash(identity, "", email="ann@example.com")
    assert ann.contact.email == "ann@example.com"
    assert ann.customer_lookup == pb.CustomerLookup(email="ann@example.com")
    linked = await _link(
        identity,
        ann.contact.contact_id,
        "e1",
        email_match=pb.EmailMatch(
            candidates=[pb.CustomerCandidate(stripe_customer_id="cus_a", email="ANN@example.com")]
        ),
    )
    assert (linked.contact.stripe_customer_id, linked.contact.binding_source) == (
        "cus_a",
        pb.BINDING_SOURCE_SIGNED_EMAIL,
    )
    assert (await _by_hash(identity, "", email="ann@example.com")).HasField(
        "customer_lookup"
    ) is False


async def test_metadata_binding_and_a_binding_never_moves(identity: Stub) -> None:
    await _setup(identity, metadata_key="askvault_user_id")
    alice = await _by_hash(identity, "alice", email="alice@example.com")
    assert alice.customer_lookup == pb.CustomerLookup(
        metadata_key="askvault_user_id", metadata_value="alice"
    )

    def match(key: str, metadata_key: str, *candidates: tuple[str, str]) -> Any:
        return _link(
            identity,
            alice.contact.contact_id,
            key,
            metadata_match=pb.MetadataMatch(
                metadata_key=metadata_key,
                candidates=[
                    pb.CustomerCandidate(stripe_customer_id=c, metadata_value=v)
                    for c, v in candidates
                ],
            ),
        )

    code, _, _ = await _refusal(match("x1", "other_key", ("cus_a", "alice")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, reason, _ = await _refusal(match("x2", "askvault_user_id", ("cus_b", "bob")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    linked = await match("x3", "askvault_user_id", ("cus_a", "alice"), ("cus_b", "bob"))
    assert (linked.contact.stripe_customer_id, linked.contact.binding_source) == (
        "cus_a",
        pb.BINDING_SOURCE_CUSTOMER_METADATA,
    )
    same = await match("x4", "askvault_user_id", ("cus_a", "alice"))
    assert same.contact.stripe_customer_id == "cus_a"
    code, reason, _ = await _refusal(match("x5", "askvault_user_id", ("cus_z", "alice")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CUSTOMER_ALREADY_BOUND")
    assert (await _by_hash(identity, "alice")).contact.stripe_customer_id == "cus_a"


async def test_explicit_binding_is_admin_only(identity: Stub) -> None:
    await _setup(identity)
    contact = (await _by_hash(identity, "u1")).contact
    code, reason, _ = await _refusal(
        _link(identity, contact.contact_id, "a1", stripe_customer_id="cus_x")
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_REQUIRED")
    linked = await identity.LinkCustomer(
        pb.LinkCustomerRequest(
            workspace_id=WS,
            contact_id=contact.contact_id,
            stripe_customer_id="cus_x",
            idempotency_key="a2",
        ),
        metadata=ADMIN,
    )
    assert linked.contact.binding_source == pb.BINDING_SOURCE_ADMIN


async def test_a_token_stripe_customer_id_claim_binds(identity: Stub) -> None:
    await _setup(identity)
    verified = await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(workspace_id=WS, token=_token(stripe_customer_id="cus_t"))
    )
    assert (verified.contact.stripe_customer_id, verified.contact.binding_source) == (
        "cus_t",
        pb.BINDING_SOURCE_TOKEN_CLAIM,
    )
    assert not verified.HasField("customer_lookup")
    keys = {
        key.key_id: assertions.public_key_from_raw(key.public_key)
        for key in (await identity.GetVerificationKeys(pb.GetVerificationKeysRequest())).keys
    }
    claims = assertions.verify(verified.identity_assertion, WS, keys)  # type: ignore[arg-type]
    assert claims.stripe_customer_id == "cus_t"
    code, reason, _ = await _refusal(
        identity.VerifyVisitor(
            pb.VerifyVisitorRequest(workspace_id=WS, token=_token(stripe_customer_id="acct_1"))
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_workspace_settings_validate_the_key(identity: Stub) -> None:
    await _setup(identity)
    got = await identity.GetWorkspaceSettings(
        pb.GetWorkspaceSettingsRequest(workspace_id=WS), metadata=ADMIN
    )
    assert got.settings.customer_metadata_key == ""
    for bad in ("a'] OR email:'x", "x" * 41, "key with space"):
        code, _, violations = await _refusal(
            identity.UpdateWorkspaceSettings(
                pb.UpdateWorkspaceSettingsRequest(
                    workspace_id=WS,
                    settings=pb.WorkspaceSettings(customer_metadata_key=bad),
                    idempotency_key=f"bad-{len(bad)}",
                ),
                metadata=ADMIN,
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "settings.customer_metadata_key" in violations
    code, _, _ = await _refusal(
        identity.GetWorkspaceSettings(pb.GetWorkspaceSettingsRequest(workspace_id=WS))
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_self_serve_prices_moved_to_policy_are_refused_here_and_never_told(
    identity: Stub, database_url: str
) -> None:
    # The list is policy's bounds now: identity refuses one (rather than dropping it while
    # the admin believes it took effect), keeps the rest of the settings, and never tells
    # the edge a list, whatever its deprecated column still holds.
    await _setup(identity, metadata_key="askvault_user_id")
    wanted = pb.WorkspaceSettings(
        customer_metadata_key="askvault_other_id", self_serve_price_ids=["price_growth"]
    )
    code, _, violations = await _refusal(
        identity.UpdateWorkspaceSettings(
            pb.UpdateWorkspaceSettingsRequest(
                workspace_id=WS, settings=wanted, idempotency_key="s1"
            ),
            metadata=ADMIN,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "settings.self_serve_price_ids" in violations
    got = await identity.GetWorkspaceSettings(
        pb.GetWorkspaceSettingsRequest(workspace_id=WS), metadata=ADMIN
    )
    # Nothing changed, not even the key sent along.
    assert got.settings == pb.WorkspaceSettings(customer_metadata_key="askvault_user_id")
    # A list left in the deprecated column (set before the move) is read by nothing.
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE identity.workspaces SET self_serve_price_ids = '{price_old}'"
        )
    finally:
        await connection.close()
    assert list((await _by_hash(identity, "u1")).self_serve_price_ids) == []
    got = await identity.GetWorkspaceSettings(
        pb.GetWorkspaceSettingsRequest(workspace_id=WS), metadata=ADMIN
    )
    assert list(got.settings.self_serve_price_ids) == []


async def test_migration_keeps_old_secrets_as_user_hash_and_reports_legacy_bindings(
    empty_database_url: str,
) -> None:
    # A database as it was before migration 0002: a secret, a contact bound by the email it
    # typed, and a contact known by its (signed) email only.
    settings = identity_settings(empty_database_url)
    migrations = database.load_migrations("identity.migrations")
    connection = await asyncpg.connect(empty_database_url)
    try:
        await connection.execute(
            "CREATE SCHEMA identity; CREATE TABLE identity.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute(f"SET search_path TO identity; {migrations[0].sql}")
        await connection.execute("INSERT INTO schema_migrations VALUES (1, 'initial')")
        box = SecretBox(settings.secrets_encryption_keys.get_secret_value())
        await connection.execute("INSERT INTO workspaces (workspace_id) VALUES ('ws_a')")
        await connection.execute(
            "INSERT INTO hmac_secrets (workspace_id, key_id, ciphertext)"
            " VALUES ('ws_a', 'old', $1)",
            box.seal(HASH_SECRET, "ws_a/hmac/old"),
        )
        await connection.execute(
            "INSERT INTO contacts (workspace_id, contact_id, user_id, email, email_normalized,"
            " stripe_customer_id) VALUES"
            " ('ws_a', 'ct_m', 'mallory', 'victim@example.com', 'victim@example.com', 'cus_v'),"
            " ('ws_a', 'ct_e', '', 'eve@example.com', 'eve@example.com', '')"
        )
    finally:
        await connection.close()
    async with (
        testing.running(IdentityService(settings), settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        mallory = await _by_hash(identity, "mallory")  # the old secret verifies user_hash
        assert (mallory.contact.email, mallory.contact.claimed_email) == (
            "",
            "victim@example.com",
        )
        assert mallory.contact.binding_source == pb.BINDING_SOURCE_LEGACY_UNSIGNED
        eve = await _by_hash(identity, "", email="eve@example.com")
        assert (eve.contact.contact_id, eve.contact.email) == ("ct_e", "eve@example.com")
        code, reason, _ = await _refusal(
            identity.VerifyVisitor(
                pb.VerifyVisitorRequest(workspace_id=WS, token=_token(HASH_SECRET, "old"))
            )
        )
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_KEY")
        legacy = await identity.ListLegacyBindings(
            pb.ListLegacyBindingsRequest(workspace_id=WS, page_size=1), metadata=ADMIN
        )
        assert [c.contact_id for c in legacy.contacts] == ["ct_m"]
        assert legacy.next_page_token == ""
