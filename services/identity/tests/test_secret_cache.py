"""The in-memory cache of decrypted workspace secrets: its bounds alone (an injectable clock),
then rotation across two replicas of identity on one database, and what a known visitor
costs in queries."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
import grpc
import jwt
import pytest

from askvault.identity.v1 import identity_pb2 as pb
from askvault.identity.v1 import identity_pb2_grpc
from identity.domain.verification import compute_user_hash
from identity.secret_cache import SecretCache, WorkspaceSecrets
from identity.service import IdentityService
from identity.tests.conftest import identity_settings
from runtime import testing

# The stub on an aio channel (typed in the generated .pyi only).
Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"
ADMIN = testing.admin_metadata()
OLD = b"o" * 32
NEW = b"n" * 32
# Short, so the bound is tested in real time across replicas without a long wait.
TTL_SECONDS = 1.0
# What a loaded machine may add to the bound: the calls themselves and the polling.
SLACK_SECONDS = 1.0


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _secrets(marker: bytes) -> WorkspaceSecrets:
    return WorkspaceSecrets.of({"k1": marker * 32}, "")


def _loader(
    value: WorkspaceSecrets | None, loads: list[str]
) -> Callable[[], Awaitable[WorkspaceSecrets | None]]:
    async def load() -> WorkspaceSecrets | None:
        loads.append("load")
        return value

    return load


# -- the cache alone -------------------------------------------------------------------------


async def test_an_entry_is_served_until_its_ttl_then_loaded_again() -> None:
    clock, loads = _Clock(), list[str]()
    cache = SecretCache(ttl_seconds=5.0, max_entries=10, clock=clock)
    first = await cache.get("ws_a", "user_hash", _loader(_secrets(b"a"), loads))
    clock.now += 4.9
    assert await cache.get("ws_a", "user_hash", _loader(_secrets(b"b"), loads)) is first
    assert len(loads) == 1
    clock.now += 0.1
    renewed = await cache.get("ws_a", "user_hash", _loader(_secrets(b"b"), loads))
    assert renewed is not None and renewed.opened["k1"] == b"b" * 32
    assert len(loads) == 2


async def test_invalidation_drops_only_that_workspace_and_every_purpose() -> None:
    loads = list[str]()
    cache = SecretCache(ttl_seconds=60.0, max_entries=10, clock=_Clock())
    for workspace in ("ws_a", "ws_b"):
        for purpose in ("user_hash", "visitor_token"):
            await cache.get(workspace, purpose, _loader(_secrets(b"a"), loads))
    cache.invalidate("ws_a")
    assert len(cache) == 2
    fresh = await cache.get("ws_a", "user_hash", _loader(_secrets(b"z"), loads))
    kept = await cache.get("ws_b", "user_hash", _loader(_secrets(b"z"), loads))
    assert fresh is not None and fresh.opened["k1"] == b"z" * 32
    assert kept is not None and kept.opened["k1"] == b"a" * 32


async def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    cache = SecretCache(ttl_seconds=60.0, max_entries=10, clock=_Clock())
    release = asyncio.Event()

    async def slow_old_read() -> WorkspaceSecrets | None:
        await release.wait()
        return _secrets(b"o")

    reading = asyncio.create_task(cache.get("ws_a", "user_hash", slow_old_read))
    await asyncio.sleep(0)
    cache.invalidate("ws_a")  # a RetireSecret committed while the old rows were in flight
    release.set()
    assert (await reading) is not None
    loads = list[str]()
    fresh = await cache.get("ws_a", "user_hash", _loader(_secrets(b"n"), loads))
    assert loads == ["load"] and fresh is not None and fresh.opened["k1"] == b"n" * 32


async def test_unknown_workspaces_are_not_kept_and_a_zero_ttl_keeps_nothing() -> None:
    loads = list[str]()
    cache = SecretCache(ttl_seconds=60.0, max_entries=10, clock=_Clock())
    assert await cache.get("ws_x", "user_hash", _loader(None, loads)) is None
    assert await cache.get("ws_x", "user_hash", _loader(None, loads)) is None
    assert (len(loads), len(cache)) == (2, 0)
    off = SecretCache(ttl_seconds=0.0, max_entries=10, clock=_Clock())
    await off.get("ws_a", "user_hash", _loader(_secrets(b"a"), loads))
    await off.get("ws_a", "user_hash", _loader(_secrets(b"a"), loads))
    assert (len(loads), len(off)) == (4, 0)


async def test_size_is_bounded_least_recently_used_first() -> None:
    loads = list[str]()
    cache = SecretCache(ttl_seconds=60.0, max_entries=2, clock=_Clock())
    for workspace in ("ws_1", "ws_2"):
        await cache.get(workspace, "user_hash", _loader(_secrets(b"a"), loads))
    await cache.get("ws_1", "user_hash", _loader(_secrets(b"a"), loads))  # ws_1 used again
    await cache.get("ws_3", "user_hash", _loader(_secrets(b"a"), loads))
    assert (len(cache), len(loads)) == (2, 3)
    await cache.get("ws_1", "user_hash", _loader(_secrets(b"a"), loads))  # still there
    assert len(loads) == 3
    await cache.get("ws_2", "user_hash", _loader(_secrets(b"a"), loads))  # was evicted
    assert len(loads) == 4


async def test_the_cached_secrets_cannot_be_changed_by_a_caller() -> None:
    opened = {"k1": b"a" * 32}
    secrets = WorkspaceSecrets.of(opened, "")
    opened["k2"] = b"b" * 32
    assert list(secrets.opened) == ["k1"]
    with pytest.raises(TypeError):
        secrets.opened["k3"] = b"c" * 32  # type: ignore[index]


# -- two replicas on one database ------------------------------------------------------------


@asynccontextmanager
async def _replicas(database_url: str, count: int, **values: object) -> AsyncIterator[list[Stub]]:
    """``count`` identity servers sharing the database and the keys, as replicas do."""
    shared: dict[str, object] = {
        "secrets_encryption_keys": f"k1:{base64.b64encode(os.urandom(32)).decode()}",
        "assertion_signing_keys": f"a1:{base64.b64encode(os.urandom(32)).decode()}",
        "secret_cache_ttl_seconds": TTL_SECONDS,
        **values,
    }
    replicas: list[Replica] = []
    async with _started(database_url, count, shared, replicas):
        yield [replica.stub for replica in replicas]


@asynccontextmanager
async def _replica_with_pool(database_url: str, **values: object) -> AsyncIterator[Replica]:
    replicas: list[Replica] = []
    async with _started(database_url, 1, values, replicas):
        yield replicas[0]


@dataclass(frozen=True)
class Replica:
    """A running identity server's client stub and its database pool."""

    stub: Stub
    pool: asyncpg.Pool


@asynccontextmanager
async def _started(
    database_url: str, count: int, values: dict[str, object], replicas: list[Replica]
) -> AsyncIterator[None]:
    if count == 0:
        yield
        return
    settings = identity_settings(database_url, **values)
    async with (
        testing.running(IdentityService(settings), settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        replicas.append(Replica(identity_pb2_grpc.IdentityServiceStub(channel), running.pool))
        async with _started(database_url, count - 1, values, replicas):
            yield


async def _add(stub: Stub, workspace: str, key_id: str, secret: bytes) -> None:
    await stub.AddSecret(
        pb.AddSecretRequest(
            workspace_id=workspace,
            key_id=key_id,
            secret=secret,
            idempotency_key=f"add-{workspace}-{key_id}",
            purpose=pb.SECRET_PURPOSE_USER_HASH,
        ),
        metadata=ADMIN,
    )


async def _retire(stub: Stub, workspace: str, key_id: str) -> None:
    await stub.RetireSecret(
        pb.RetireSecretRequest(
            workspace_id=workspace, key_id=key_id, idempotency_key=f"retire-{key_id}"
        ),
        metadata=ADMIN,
    )


async def _verifies(stub: Stub, workspace: str, secret: bytes, user_id: str = "u1") -> bool:
    try:
        await stub.VerifyVisitor(
            pb.VerifyVisitorRequest(
                workspace_id=workspace,
                user_id=user_id,
                user_hash=compute_user_hash(secret, user_id),
            )
        )
    except grpc.aio.AioRpcError as refused:
        reason = testing.error_details(refused)[:2]
        if reason != (grpc.StatusCode.UNAUTHENTICATED, "HASH_MISMATCH"):
            raise
        return False
    return True


async def _seconds_until(expected: bool, check: Callable[[], Awaitable[bool]]) -> float:
    """How long until ``check()`` answers ``expected`` (polled), failing past the bound."""
    started = time.monotonic()
    while await check() != expected:
        assert time.monotonic() - started < TTL_SECONDS + SLACK_SECONDS, "outlived its bound"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_retired_key_stops_verifying_everywhere_within_the_bound(
    database_url: str,
) -> None:
    async with _replicas(database_url, 2) as (retiring, other):
        await _add(retiring, "ws_a", "old", OLD)
        await _add(retiring, "ws_a", "new", NEW)
        assert await _verifies(other, "ws_a", OLD)  # the other replica now holds "old"
        assert await _verifies(retiring, "ws_a", OLD)
        retired_at = time.monotonic()
        await _retire(retiring, "ws_a", "old")
        # The replica that retired it refuses at once...
        assert not await _verifies(retiring, "ws_a", OLD)
        # ...the other within the TTL of its cached copy (loaded before the retirement).
        await _seconds_until(False, lambda: _verifies(other, "ws_a", OLD))
        assert time.monotonic() - retired_at <= TTL_SECONDS + SLACK_SECONDS
        assert await _verifies(other, "ws_a", NEW)


async def test_a_new_key_verifies_everywhere_within_the_bound(database_url: str) -> None:
    async with _replicas(database_url, 2) as (adding, other):
        await _add(adding, "ws_a", "old", OLD)
        assert not await _verifies(other, "ws_a", NEW)  # the other caches {"old"}
        added_at = time.monotonic()
        await _add(adding, "ws_a", "new", NEW)
        assert await _verifies(adding, "ws_a", NEW)
        await _seconds_until(True, lambda: _verifies(other, "ws_a", NEW))
        assert time.monotonic() - added_at <= TTL_SECONDS + SLACK_SECONDS


async def test_a_workspace_never_verifies_with_another_workspaces_cached_secret(
    database_url: str,
) -> None:
    async with _replicas(database_url, 1, secret_cache_ttl_seconds=60.0) as (identity,):
        # The same key id in both workspaces, both warm in the cache.
        await _add(identity, "ws_a", "k1", OLD)
        await _add(identity, "ws_b", "k1", NEW)
        for _ in range(2):
            assert await _verifies(identity, "ws_a", OLD)
            assert await _verifies(identity, "ws_b", NEW)
            assert not await _verifies(identity, "ws_a", NEW)
            assert not await _verifies(identity, "ws_b", OLD)
        code, reason, _ = testing.error_details(
            await _refused(
                identity.VerifyVisitor(
                    pb.VerifyVisitorRequest(
                        workspace_id="ws_c", user_id="u1", user_hash=compute_user_hash(OLD, "u1")
                    )
                )
            )
        )
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "WORKSPACE_NOT_FOUND")


async def _refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    return failed.value


# -- what a known visitor costs ----------------------------------------------------------------


async def test_a_known_visitor_costs_at_most_one_query(database_url: str) -> None:
    """One pooled connection, so every statement identity runs is logged; the pool's own
    reset on release and the health probe's ping are not identity's work."""
    async with _replica_with_pool(
        database_url,
        database_pool_min_size=1,
        database_pool_max_size=1,
        secret_cache_ttl_seconds=60.0,
        health_probe_interval_seconds=3600.0,
    ) as replica:
        identity = replica.stub
        await _add(identity, "ws_a", "h1", OLD)
        await identity.AddSecret(
            pb.AddSecretRequest(
                workspace_id="ws_a",
                key_id="t1",
                secret=NEW,
                idempotency_key="add-t1",
                purpose=pb.SECRET_PURPOSE_VISITOR_TOKEN,
            ),
            metadata=ADMIN,
        )
        now = int(time.time())
        token = jwt.encode(
            {
                "sub": "u2",
                "email": "u2@example.com",
                "stripe_customer_id": "cus_2",
                "iat": now,
                "exp": now + 600,
            },
            NEW,
            algorithm="HS256",
            headers={"kid": "t1"},
        )

        async def by_token() -> pb.VerifyVisitorResponse:
            response: pb.VerifyVisitorResponse = await identity.VerifyVisitor(
                pb.VerifyVisitorRequest(workspace_id="ws_a", token=token, email="u2@example.com")
            )
            return response

        async def by_hash() -> pb.VerifyVisitorResponse:
            response: pb.VerifyVisitorResponse = await identity.VerifyVisitor(
                pb.VerifyVisitorRequest(
                    workspace_id="ws_a",
                    user_id="u1",
                    email="u1@example.com",
                    user_hash=compute_user_hash(OLD, "u1"),
                )
            )
            return response

        # First sight: created (and bound, for the token), secrets loaded.
        first_hash, first_token = await by_hash(), await by_token()
        assert first_token.contact.stripe_customer_id == "cus_2"
        queries = await _logged_queries(replica.pool)
        for visit, first in ((by_hash, first_hash), (by_token, first_token)):
            queries.clear()
            again = await visit()
            assert again.contact.contact_id == first.contact.contact_id
            assert again.contact == first.contact
            # Exactly the one read of the contact (also proves the logger sees the queries).
            assert len(queries) == 1, queries


async def _logged_queries(pool: asyncpg.Pool) -> list[str]:
    """A live list of the statements the server's one pooled connection runs from now on."""
    logged: list[str] = []
    async with pool.acquire() as connection:
        reset = connection.get_reset_query()

        def record(query: asyncpg.connection.LoggedQuery) -> None:
            if query.query not in (reset, "SELECT 1"):
                logged.append(query.query)

        connection.add_query_logger(record)
    await asyncio.sleep(0)
    logged.clear()
    return logged


async def test_a_changed_metadata_key_is_used_at_once_by_the_replica_that_changed_it(
    database_url: str,
) -> None:
    async with _replicas(database_url, 1, secret_cache_ttl_seconds=60.0) as (identity,):
        await _add(identity, "ws_a", "k1", OLD)
        request = pb.VerifyVisitorRequest(
            workspace_id="ws_a", user_id="u1", user_hash=compute_user_hash(OLD, "u1")
        )
        before = await identity.VerifyVisitor(request)
        assert before.customer_lookup.metadata_key == ""
        await identity.UpdateWorkspaceSettings(
            pb.UpdateWorkspaceSettingsRequest(
                workspace_id="ws_a",
                settings=pb.WorkspaceSettings(customer_metadata_key="askvault_user_id"),
                idempotency_key="settings-1",
            ),
            metadata=ADMIN,
        )
        after = await identity.VerifyVisitor(request)
        assert after.customer_lookup == pb.CustomerLookup(
            metadata_key="askvault_user_id", metadata_value="u1"
        )
