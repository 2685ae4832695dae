"""Identity over real gRPC against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import grpc
import jwt
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2

from askvault.identity.v1 import identity_pb2 as pb
from askvault.identity.v1 import identity_pb2_grpc
from identity.domain.verification import compute_user_hash
from identity.service import IdentityService
from identity.tests.conftest import identity_settings
from runtime import assertions, database, grpc_typing, server, testing
from runtime.server import RunningService

# The stub on an aio channel (typed in the generated .pyi only).
Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"
SECRET_1 = b"1" * 32
SECRET_2 = b"2" * 32
ADMIN = testing.admin_metadata()


async def _add_secret(
    identity: Stub,
    workspace: str,
    key_id: str,
    secret: bytes,
    purpose: pb.SecretPurpose.ValueType = pb.SECRET_PURPOSE_USER_HASH,
) -> None:
    await identity.AddSecret(
        pb.AddSecretRequest(
            workspace_id=workspace,
            key_id=key_id,
            secret=secret,
            idempotency_key=f"add-{workspace}-{key_id}",
            purpose=purpose,
        ),
        metadata=ADMIN,
    )


async def _verify(
    identity: Stub, workspace: str, user_id: str, secret: bytes, email: str = ""
) -> pb.VerifyVisitorResponse:
    response: pb.VerifyVisitorResponse = await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(
            workspace_id=workspace,
            user_id=user_id,
            email=email,
            user_hash=compute_user_hash(secret, user_id, email),
        )
    )
    return response


async def _refusal(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    return testing.error_details(failed.value)


async def _keys(identity: Stub) -> dict[str, object]:
    response = await identity.GetVerificationKeys(pb.GetVerificationKeysRequest())
    return {key.key_id: assertions.public_key_from_raw(key.public_key) for key in response.keys}


def _ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def test_verified_visitor_gets_a_contact_and_a_signed_assertion(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    first = await _verify(identity, "ws_a", "user-1", SECRET_1, email="Ann@Example.com")
    again = await _verify(identity, "ws_a", "user-1", SECRET_1)
    assert first.contact.contact_id == again.contact.contact_id
    # The hash covers the user id only: the email is what the visitor claims, not signed.
    assert (again.contact.email, again.contact.claimed_email) == ("", "Ann@Example.com")
    keys = await _keys(identity)
    assertion = assertions.verify(first.identity_assertion, "ws_a", keys)  # type: ignore[arg-type]
    assert (assertion.contact_id, assertion.user_id) == (first.contact.contact_id, "user-1")
    assert assertion.expires_at == first.assertion_expires_at.ToDatetime(UTC)


async def test_assertion_is_refused_after_expiry_for_other_workspace_and_when_forged(
    identity: Stub,
) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    response = await _verify(identity, "ws_a", "user-1", SECRET_1)
    keys = await _keys(identity)
    token = response.identity_assertion
    later = response.assertion_expires_at.ToDatetime(UTC).timestamp() + 60
    for candidate, workspace, now, reason in (
        (token, "ws_a", later, "ASSERTION_EXPIRED"),
        (token, "ws_b", None, "WORKSPACE_MISMATCH"),
        (
            token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
            "ws_a",
            None,
            "ASSERTION_INVALID",
        ),
        ("", "ws_a", None, "IDENTITY_REQUIRED"),
    ):
        with pytest.raises(assertions.AssertionRefused) as refused:
            assertions.verify(candidate, workspace, keys, now=now)  # type: ignore[arg-type]
        assert refused.value.reason == reason


async def test_every_refusal_is_unauthenticated_with_a_reason(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    cases = [
        (
            pb.VerifyVisitorRequest(
                workspace_id="ws_a", user_id="u1", user_hash=compute_user_hash(SECRET_2, "u1")
            ),
            "HASH_MISMATCH",
        ),
        (
            pb.VerifyVisitorRequest(
                workspace_id="ws_a", user_id="u1", user_hash=compute_user_hash(SECRET_1, "u2")
            ),
            "HASH_MISMATCH",
        ),
        (
            pb.VerifyVisitorRequest(
                workspace_id="ws_a",
                user_id="u1",
                user_hash=compute_user_hash(SECRET_1, "u1").upper(),
            ),
            "HASH_MISMATCH",
        ),
        (
            pb.VerifyVisitorRequest(
                workspace_id="ws_nope", user_id="u1", user_hash=compute_user_hash(SECRET_1, "u1")
            ),
            "WORKSPACE_NOT_FOUND",
        ),
    ]
    for request, reason in cases:
        code, got, _ = await _refusal(identity.VerifyVisitor(request))
        assert (code, got) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_empty_identifiers_are_invalid_arguments(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    code, reason, violations = await _refusal(
        identity.VerifyVisitor(
            pb.VerifyVisitorRequest(workspace_id="ws_a", user_hash=compute_user_hash(SECRET_1, ""))
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "user_id" in violations


async def test_jwt_visitors_and_their_refusals(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "h1", SECRET_2)
    await _add_secret(identity, "ws_a", "k1", SECRET_1, pb.SECRET_PURPOSE_VISITOR_TOKEN)
    now = int(time.time())

    def token(secret: bytes, kid: str, **claims: object) -> str:
        body: dict[str, object] = {"sub": "u1", "iat": now, "exp": now + 600}
        body.update(claims)
        return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})

    ok = await identity.VerifyVisitor(
        pb.VerifyVisitorRequest(workspace_id="ws_a", token=token(SECRET_1, "k1", email="u@x.io"))
    )
    assert (ok.contact.user_id, ok.method) == ("u1", pb.VERIFICATION_METHOD_TOKEN)
    for bad, reason in (
        (token(SECRET_1, "k1", iat=now - 7200, exp=now - 3600), "TOKEN_EXPIRED"),
        (token(SECRET_1, "k1", iat=now + 3600, exp=now + 7200), "TOKEN_NOT_YET_VALID"),
        (token(SECRET_1, "k9"), "UNKNOWN_KEY"),
        (token(SECRET_2, "k1"), "TOKEN_INVALID"),
        # A user_hash key never verifies a token, even with its own material.
        (token(SECRET_2, "h1"), "UNKNOWN_KEY"),
    ):
        code, got, _ = await _refusal(
            identity.VerifyVisitor(pb.VerifyVisitorRequest(workspace_id="ws_a", token=bad))
        )
        assert (code, got) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_rotation_keeps_both_keys_until_the_old_one_is_retired(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "old", SECRET_1)
    await _add_secret(identity, "ws_a", "new", SECRET_2)
    await _verify(identity, "ws_a", "u1", SECRET_1)
    await _verify(identity, "ws_a", "u1", SECRET_2)
    await identity.RetireSecret(
        pb.RetireSecretRequest(workspace_id="ws_a", key_id="old", idempotency_key="retire-old"),
        metadata=ADMIN,
    )
    code, reason, _ = await _refusal(_verify(identity, "ws_a", "u1", SECRET_1))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "HASH_MISMATCH")
    await _verify(identity, "ws_a", "u1", SECRET_2)
    listed = await identity.ListSecrets(pb.ListSecretsRequest(workspace_id="ws_a"), metadata=ADMIN)
    assert [(s.key_id, s.active) for s in listed.secrets] == [("old", False), ("new", True)]
    assert SECRET_1 not in listed.SerializeToString()


async def test_admin_rpcs_need_an_admin_credential(identity: Stub) -> None:
    request = pb.AddSecretRequest(
        workspace_id="ws_a",
        key_id="k1",
        secret=SECRET_1,
        idempotency_key="x",
        purpose=pb.SECRET_PURPOSE_USER_HASH,
    )
    code, reason, _ = await _refusal(identity.AddSecret(request))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_REQUIRED")
    forged = (
        (
            "authorization",
            "Bearer " + jwt.encode({"sub": "eve", "role": "admin"}, "guess" * 8, "HS256"),
        ),
    )
    code, reason, _ = await _refusal(identity.AddSecret(request, metadata=forged))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "ADMIN_REQUIRED")
    code, _, violations = await _refusal(
        identity.AddSecret(
            pb.AddSecretRequest(
                workspace_id="ws_a", key_id="k1", secret=b"short", idempotency_key="y"
            ),
            metadata=ADMIN,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "secret" in violations


async def test_workspaces_are_isolated(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    await _add_secret(identity, "ws_b", "k1", SECRET_2)
    # A's secret does not verify visitors of B, even under the same key id.
    code, reason, _ = await _refusal(_verify(identity, "ws_b", "u1", SECRET_1))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "HASH_MISMATCH")
    contact_a = (await _verify(identity, "ws_a", "u1", SECRET_1)).contact
    code, _, _ = await _refusal(
        identity.GetContact(
            pb.GetContactRequest(workspace_id="ws_b", contact_id=contact_a.contact_id)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _, _ = await _refusal(
        identity.LinkCustomer(
            pb.LinkCustomerRequest(
                workspace_id="ws_b",
                contact_id=contact_a.contact_id,
                stripe_customer_id="cus_x",
                idempotency_key="l1",
            ),
            metadata=ADMIN,
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    await identity.LinkCustomer(
        pb.LinkCustomerRequest(
            workspace_id="ws_a",
            contact_id=contact_a.contact_id,
            stripe_customer_id="cus_a",
            idempotency_key="l2",
        ),
        metadata=ADMIN,
    )
    in_b = await identity.UpdateTags(
        pb.UpdateTagsRequest(
            workspace_id="ws_b",
            stripe_customer_id="cus_a",
            customer_status=pb.CUSTOMER_STATUS_CANCELED,
            source_time=_ts(datetime.now(UTC)),
            idempotency_key="t1",
        )
    )
    assert list(in_b.contacts) == []
    unchanged = await identity.GetContact(
        pb.GetContactRequest(workspace_id="ws_a", contact_id=contact_a.contact_id)
    )
    assert unchanged.contact.tags.customer_status == pb.CUSTOMER_STATUS_UNSPECIFIED


async def test_link_by_email_match_and_its_refusals(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    # Identified by email: the hash is over the email, so the email is signed.
    contact = (await _verify(identity, "ws_a", "", SECRET_1, email="ann@example.com")).contact
    assert contact.email == "ann@example.com"

    def link(key: str, *candidates: tuple[str, str]) -> Any:
        return identity.LinkCustomer(
            pb.LinkCustomerRequest(
                workspace_id="ws_a",
                contact_id=contact.contact_id,
                email_match=pb.EmailMatch(
                    candidates=[
                        pb.CustomerCandidate(stripe_customer_id=c, email=e) for c, e in candidates
                    ]
                ),
                idempotency_key=key,
            )
        )

    code, reason, _ = await _refusal(
        link("m1", ("cus_1", "ANN@example.com"), ("cus_2", "ann@EXAMPLE.com"))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AMBIGUOUS_CUSTOMER_MATCH")
    linked = await link("m2", ("cus_1", "ANN@example.com"), ("cus_9", "bob@example.com"))
    assert linked.contact.stripe_customer_id == "cus_1"  # type: ignore[attr-defined]
    assert linked.contact.binding_source == pb.BINDING_SOURCE_SIGNED_EMAIL  # type: ignore[attr-defined]
    replay = await link("m2", ("cus_1", "ANN@example.com"), ("cus_9", "bob@example.com"))
    assert replay == linked
    code, reason, _ = await _refusal(link("m2", ("cus_9", "ann@example.com")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "IDEMPOTENCY_MISMATCH")
    found = await identity.FindContactsByCustomer(
        pb.FindContactsByCustomerRequest(workspace_id="ws_a", stripe_customer_id="cus_1")
    )
    assert [c.contact_id for c in found.contacts] == [contact.contact_id]


async def test_tags_under_out_of_order_updates_and_content_gating(identity: Stub) -> None:
    await _add_secret(identity, "ws_a", "k1", SECRET_1)
    contact = (await _verify(identity, "ws_a", "u1", SECRET_1)).contact
    await identity.LinkCustomer(
        pb.LinkCustomerRequest(
            workspace_id="ws_a",
            contact_id=contact.contact_id,
            stripe_customer_id="cus_1",
            idempotency_key="l",
        ),
        metadata=ADMIN,
    )
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    newest = pb.UpdateTagsRequest(
        workspace_id="ws_a",
        stripe_customer_id="cus_1",
        customer_status=pb.CUSTOMER_STATUS_ACTIVE,
        plan_tier=pb.PLAN_TIER_GROWTH,
        source_time=_ts(t0 + timedelta(minutes=2)),
        idempotency_key="evt_2",
    )
    stale = pb.UpdateTagsRequest(
        workspace_id="ws_a",
        stripe_customer_id="cus_1",
        customer_status=pb.CUSTOMER_STATUS_TRIALING,
        plan_tier=pb.PLAN_TIER_STARTER,
        source_time=_ts(t0),
        idempotency_key="evt_1",
    )
    await identity.UpdateTags(newest)
    after_stale = await identity.UpdateTags(stale)
    tags = after_stale.contacts[0].tags
    assert (tags.customer_status, tags.plan_tier) == (
        pb.CUSTOMER_STATUS_ACTIVE,
        pb.PLAN_TIER_GROWTH,
    )
    allowed = await identity.CheckAccess(
        pb.CheckAccessRequest(
            workspace_id="ws_a",
            contact_id=contact.contact_id,
            requirement=pb.AccessRequirement(minimum_plan_tier=pb.PLAN_TIER_STARTER),
        )
    )
    denied = await identity.CheckAccess(
        pb.CheckAccessRequest(
            workspace_id="ws_a",
            contact_id=contact.contact_id,
            requirement=pb.AccessRequirement(minimum_plan_tier=pb.PLAN_TIER_ENTERPRISE),
        )
    )
    assert allowed.allowed
    assert not denied.allowed
    assert list(denied.unmet) == ["minimum_plan_tier"]


async def test_health_serves_and_reflection_lists_the_service(
    identity_server: RunningService,
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    async with grpc.aio.insecure_channel(identity_server.address) as channel:
        health = grpc_typing.health_stub(channel)
        answer = await health.Check(
            health_pb2.HealthCheckRequest(service="askvault.identity.v1.IdentityService")
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = grpc_typing.reflection_stub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for r in replies for s in r.list_services_response.service]
        assert "askvault.identity.v1.IdentityService" in names


async def test_shutdown_flips_health_to_not_serving_before_draining(database_url: str) -> None:
    # The delay is the window in which health answers NOT_SERVING while calls still work.
    settings = identity_settings(database_url, shutdown_delay_seconds=3.0)
    running = await server.start(IdentityService(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        health = grpc_typing.health_stub(channel)
        before = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        stopping = asyncio.create_task(running.stop(grace=1.0))
        # The stop flips health before anything else; no sleep needed, just its first step.
        while running.health.serving:
            await asyncio.sleep(0.01)
        during = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        await stopping
    assert before.status == health_pb2.HealthCheckResponse.SERVING
    assert during.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_migrations_apply_to_an_empty_database_once(empty_database_url: str) -> None:
    first = await database.migrate_url(empty_database_url, "identity", "identity.migrations")
    second = await database.migrate_url(empty_database_url, "identity", "identity.migrations")
    assert first == [1, 2, 3, 4, 5]
    assert second == []


async def test_connections_are_aged_out_so_callers_resolve_again(database_url: str) -> None:
    # GOAWAY at the age ends the connection: the channel goes back to IDLE (and resolves its
    # target again on the next call); without an age it would stay READY for ever.
    settings = identity_settings(
        database_url,
        grpc_max_connection_age_seconds=0.5,
        grpc_max_connection_age_grace_seconds=0.5,
    )
    async with (
        testing.running(IdentityService(settings), settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        health = grpc_typing.health_stub(channel)
        await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        deadline = time.monotonic() + 10
        while channel.get_state() is grpc.ChannelConnectivity.READY:
            assert time.monotonic() < deadline, "the connection was never aged out"
            await asyncio.sleep(0.05)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
