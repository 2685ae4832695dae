"""The audit log against someone who controls the database: the service's own role cannot
change the log, the owner who can (dropping the triggers) cannot recompute a chain that
verifies without the MAC key, and a checkpoint logged earlier finds even a cut-off tail and
a rewritten head row. Plain SHA-256 entries written before the chain was keyed still verify,
and entries MAC'd under a rotated-out key verify while that key is kept."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy.domain import audit
from policy.service import PolicyService
from runtime import testing

from .conftest import AUDIT_MAC_KEYS, KEY_ID, Policy, TestClock, key, policy_settings
from .test_audit import _activity, _entry, _verify

_TRIGGERS = ("audit_events_append_only", "audit_events_no_truncate")


@pytest.fixture
async def service_role(policy: Policy) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the credentials the policy server runs with."""
    dsn = policy.server._settings.database_url.get_secret_value()
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def owner(policy: Policy) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the role that ran the migrations (it owns the tables and triggers)."""
    connection = await asyncpg.connect(policy.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def _rows(connection: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT * FROM policy.audit_events WHERE workspace_id = $1 ORDER BY sequence",
        workspace_id,
    )


async def _drop_triggers(owner: asyncpg.Connection) -> None:
    for trigger in _TRIGGERS:
        await owner.execute(f"DROP TRIGGER {trigger} ON policy.audit_events")


async def _rewrite_without_key(
    owner: asyncpg.Connection, workspace_id: str, sequence: int, *, drop_key_ids: bool
) -> None:
    """What an owner without the MAC key can do: alter one entry, recompute its hash and every
    later one with plain SHA-256 (optionally clearing their key ids, as if they predated the
    MAC) and move the head row to match."""
    rows = await _rows(owner, workspace_id)
    previous = rows[sequence - 2]["hash"] if sequence > 1 else audit.GENESIS_HASH
    for row in rows[sequence - 1 :]:
        entry = _entry(row)
        if row["sequence"] == sequence:
            entry = replace(entry, amount_minor=entry.amount_minor + 100_000)
        recomputed = audit.entry_hash(previous, workspace_id, row["sequence"], entry)
        await owner.execute(
            "UPDATE policy.audit_events SET amount_minor = $3, previous_hash = $4, hash = $5"
            " WHERE workspace_id = $1 AND sequence = $2",
            workspace_id,
            row["sequence"],
            entry.amount_minor,
            previous,
            recomputed,
        )
        if drop_key_ids:
            await owner.execute(
                "UPDATE policy.audit_events SET key_id = ''"
                " WHERE workspace_id = $1 AND sequence = $2",
                workspace_id,
                row["sequence"],
            )
        previous = recomputed
    await owner.execute(
        "UPDATE policy.audit_heads SET last_hash = $2 WHERE workspace_id = $1",
        workspace_id,
        previous,
    )


# -- the service's role -------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE policy.audit_events SET outcome = 'ALLOW' WHERE sequence = 2",
        "DELETE FROM policy.audit_events WHERE sequence = 2",
        "TRUNCATE policy.audit_events",
        "DROP TRIGGER audit_events_append_only ON policy.audit_events",
        "ALTER TABLE policy.audit_events DISABLE TRIGGER audit_events_append_only",
        "DROP TABLE policy.audit_events",
        "CREATE TABLE policy.imposter (id int)",
    ],
)
async def test_the_service_role_may_only_append_and_read_the_log(
    policy: Policy, service_role: asyncpg.Connection, statement: str
) -> None:
    await _activity(policy)
    # What the service needs works under its role (the server runs with it, too).
    assert await service_role.fetchval("SELECT count(*) FROM policy.audit_events") == 6
    assert not await service_role.fetchval(
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    # Refused for lack of privilege, not only by the triggers (which the owner can drop).
    with pytest.raises(
        asyncpg.InsufficientPrivilegeError, match=r"permission denied|must be owner"
    ):
        await service_role.execute(statement)
    result = await _verify(policy)
    assert (result.intact, result.checked) == (True, 6)


# -- the owner, without the MAC key -------------------------------------------------------


@pytest.mark.parametrize("drop_key_ids", [False, True])
async def test_an_owner_rewrite_recomputed_without_the_key_is_found(
    policy: Policy, owner: asyncpg.Connection, drop_key_ids: bool
) -> None:
    await _activity(policy)
    await _drop_triggers(owner)
    await _rewrite_without_key(owner, policy.workspace_id, 3, drop_key_ids=drop_key_ids)
    rows = await _rows(owner, policy.workspace_id)
    assert rows[2]["amount_minor"] == 101_000  # the rewrite took
    result = await _verify(policy)
    assert (result.intact, result.first_broken_sequence) == (False, 3)
    assert "altered" in result.problem


# -- checkpoints --------------------------------------------------------------------------


async def _checkpoint(policy: Policy, caplog: pytest.LogCaptureFixture) -> str:
    """Runs one pass of the checkpoint writer and returns the workspace's checkpoint as the
    JSON log line carries it."""
    from policy import checkpoints

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="policy.checkpoints"):
        await checkpoints.write_checkpoints(
            policy.server.pool, policy.audit_keys, policy.clock(), {}
        )
    logged = [
        record.__dict__["audit_checkpoint"]
        for record in caplog.records
        if record.getMessage() == "audit checkpoint"
        and record.__dict__["workspace_id"] == policy.workspace_id
    ]
    assert len(logged) == 1
    return str(logged[0])


async def _check(policy: Policy, checkpoint: str) -> pb.VerifyAuditCheckpointResponse:
    response: pb.VerifyAuditCheckpointResponse = await policy.stub.VerifyAuditCheckpoint(
        pb.VerifyAuditCheckpointRequest(workspace_id=policy.workspace_id, checkpoint=checkpoint),
        metadata=testing.admin_metadata(),
    )
    return response


async def test_checkpoints_are_logged_when_the_head_moved_and_verify(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    from policy import checkpoints

    await _activity(policy)
    checkpoint = await _checkpoint(policy, caplog)
    written: dict[str, int] = {}
    pool, keys = policy.server.pool, policy.audit_keys
    assert await checkpoints.write_checkpoints(pool, keys, policy.clock(), written) == 1
    assert await checkpoints.write_checkpoints(pool, keys, policy.clock(), written) == 0
    await policy.stub.Authorize(policy.plan_change())
    await policy.chain()
    assert await checkpoints.write_checkpoints(pool, keys, policy.clock(), written) == 1
    # The older checkpoint is still contained in the grown chain.
    result = await _check(policy, checkpoint)
    assert (result.contained, result.sequence, result.problem) == (True, 6, "")
    assert result.stored_hash == result.checkpoint_hash
    assert result.taken_at.ToDatetime().replace(tzinfo=policy.clock().tzinfo) == policy.clock()


@pytest.mark.parametrize(
    ("attack", "problem"),
    [
        # The last two entries deleted and the head row moved back to the new last one: the
        # chain that is left is intact, only the checkpoint knows it was longer.
        (
            [
                "DELETE FROM policy.audit_events WHERE workspace_id = $1 AND sequence > 4",
                "UPDATE policy.audit_heads h SET last_sequence = 4, last_hash = e.hash"
                " FROM policy.audit_events e WHERE h.workspace_id = $1"
                " AND e.workspace_id = $1 AND e.sequence = 4",
            ],
            "ends at sequence 4",
        ),
        # Everything gone, head row included.
        (
            [
                "TRUNCATE policy.audit_events",
                "DELETE FROM policy.audit_heads WHERE workspace_id = $1",
            ],
            "ends at sequence 0",
        ),
    ],
)
async def test_a_checkpoint_finds_a_cut_off_tail(
    policy: Policy,
    owner: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    attack: list[str],
    problem: str,
) -> None:
    await _activity(policy)
    checkpoint = await _checkpoint(policy, caplog)
    await _drop_triggers(owner)
    for statement in attack:
        if "$1" in statement:
            await owner.execute(statement, policy.workspace_id)
        else:
            await owner.execute(statement)
    with testing.captured_metrics() as captured:
        result = await _check(policy, checkpoint)
        # The alert on audit chain failures sees it.
        assert (
            captured.value("askvault.policy.audit.chain_failures", check="verify_checkpoint") == 1
        )
    assert (result.contained, result.sequence, result.stored_hash) == (False, 6, "")
    assert problem in result.problem


async def test_a_checkpoint_finds_a_rewritten_head_row(
    policy: Policy, owner: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await _activity(policy)
    checkpoint = await _checkpoint(policy, caplog)
    await _drop_triggers(owner)
    # The tail cut to entry 4, then entry 4 (the new head) rewritten and rehashed.
    await owner.execute(
        "DELETE FROM policy.audit_events WHERE workspace_id = $1 AND sequence > 4",
        policy.workspace_id,
    )
    await owner.execute(
        "UPDATE policy.audit_heads SET last_sequence = 4 WHERE workspace_id = $1",
        policy.workspace_id,
    )
    await _rewrite_without_key(owner, policy.workspace_id, 4, drop_key_ids=False)
    result = await _check(policy, checkpoint)
    assert not result.contained
    assert "broken at sequence 4" in result.problem
    # The same rewrite of the head entry, checked against a checkpoint of that very entry.
    sealed = audit.seal_checkpoint(
        policy.audit_keys,
        policy.workspace_id,
        4,
        (await _rows(owner, policy.workspace_id))[3]["previous_hash"],
        policy.clock(),
    )
    assert not (await _check(policy, sealed)).contained


async def test_a_checkpoint_not_written_by_policy_is_refused(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    await _activity(policy)
    checkpoint = await _checkpoint(policy, caplog)
    stranger = audit.MacKeys.parse(f"t1:{base64.b64encode(b's' * 32).decode()}")
    cases = [
        (
            audit.seal_checkpoint(stranger, policy.workspace_id, 6, "ab" * 32, policy.clock()),
            "AUDIT_CHECKPOINT_INVALID",
        ),
        (
            checkpoint[:-2] + ("AA" if not checkpoint.endswith("AA") else "BB"),
            "AUDIT_CHECKPOINT_INVALID",
        ),
        ("not a checkpoint", "AUDIT_CHECKPOINT_INVALID"),
    ]
    for presented, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _check(policy, presented)
        assert testing.error_details(raised.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.VerifyAuditCheckpoint(
            pb.VerifyAuditCheckpointRequest(workspace_id="ws_other", checkpoint=checkpoint),
            metadata=testing.admin_metadata(),
        )
    assert testing.error_details(raised.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "AUDIT_CHECKPOINT_INVALID",
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy.stub.VerifyAuditCheckpoint(
            pb.VerifyAuditCheckpointRequest(workspace_id=policy.workspace_id, checkpoint=checkpoint)
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- entries from before the MAC, and rotation --------------------------------------------


@asynccontextmanager
async def _server_with(
    policy: Policy, database_url: str, **values: Any
) -> AsyncIterator[policy_pb2_grpc.PolicyServiceAsyncStub]:
    """A second policy server on the same database, with other settings."""
    public: Mapping[str, Ed25519PublicKey] = {KEY_ID: policy.private_key.public_key()}

    async def key_source() -> Mapping[str, Ed25519PublicKey]:
        return public

    settings = policy_settings(database_url, **values)
    service = PolicyService(settings, key_source=key_source, clock=TestClock(policy.clock()))
    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        yield policy_pb2_grpc.PolicyServiceStub(channel)


async def _write_plain_entries(
    owner: asyncpg.Connection, policy: Policy, workspace_id: str, count: int
) -> str:
    """Entries as the code before the keyed chain wrote them: plain SHA-256, no key id.
    Returns the last hash (the head row is written too)."""
    previous = audit.GENESIS_HASH
    for sequence in range(1, count + 1):
        entry = audit.Entry(
            occurred_at=policy.clock() - timedelta(days=10 - sequence),
            actor_kind="admin",
            actor_id="admin-old",
            kind="bounds.applied",
            subject_id=f"chg_{sequence}",
        )
        current = audit.entry_hash(previous, workspace_id, sequence, entry)
        await owner.execute(
            "INSERT INTO policy.audit_events (workspace_id, sequence, occurred_at, actor_kind,"
            " actor_id, kind, contact_id, stripe_customer_id, action, amount_minor, currency,"
            " outcome, subject_id, previous_hash, hash)"
            " VALUES ($1, $2, $3, $4, $5, $6, '', '', '', 0, '', '', $7, $8, $9)",
            workspace_id,
            sequence,
            entry.occurred_at,
            entry.actor_kind,
            entry.actor_id,
            entry.kind,
            entry.subject_id,
            previous,
            current,
        )
        previous = current
    await owner.execute(
        "INSERT INTO policy.audit_heads VALUES ($1, $2, $3)", workspace_id, count, previous
    )
    return previous


async def test_a_chain_rewritten_as_plain_entries_is_refused_where_the_log_was_keyed_from_the_start(
    policy: Policy, owner: asyncpg.Connection
) -> None:
    # The owner replaces a workspace's whole log with plain SHA-256 entries (no key needed),
    # head row included: unless the deployment says its log predates the keyed chain, a
    # plain entry is an altered one.
    forged = replace(policy, workspace_id="ws_forged")
    await _write_plain_entries(owner, policy, forged.workspace_id, 3)
    result = await _verify(forged)
    assert (result.intact, result.first_broken_sequence) == (False, 1)
    assert "not MAC'd" in result.problem


async def test_plain_entries_written_before_the_mac_verify_and_stay_linked(
    policy: Policy, owner: asyncpg.Connection, database_url: str
) -> None:
    async with _server_with(policy, database_url, audit_accepts_unkeyed_prefix=True) as stub:
        await _plain_prefix_then_keyed(replace(policy, stub=stub), owner)


async def _plain_prefix_then_keyed(policy: Policy, owner: asyncpg.Connection) -> None:
    legacy = replace(policy, workspace_id="ws_legacy")
    previous = await _write_plain_entries(owner, policy, legacy.workspace_id, 3)
    await legacy.set_bounds()  # appended by the server: MAC'd, linked to the plain entry 3
    await legacy.stub.Authorize(legacy.plan_change())
    events = (
        await policy.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(workspace_id=legacy.workspace_id),
            metadata=testing.admin_metadata(),
        )
    ).events
    assert [e.key_id for e in events] == ["", "", "", "t1", "t1"]
    assert events[3].previous_hash == previous
    result = await _verify(legacy)
    assert (result.intact, result.checked, result.unsigned_entries) == (True, 5, 3)
    # A rewrite of the plain prefix, recomputed, breaks the link of the first MAC'd entry.
    await _drop_triggers(owner)
    rows = await _rows(owner, legacy.workspace_id)
    forged = replace(_entry(rows[1]), actor_id="admin-forged")
    second = audit.entry_hash(rows[0]["hash"], legacy.workspace_id, 2, forged)
    third = audit.entry_hash(second, legacy.workspace_id, 3, _entry(rows[2]))
    for sequence, values in ((2, ("admin-forged", rows[1]["previous_hash"], second)),):
        await owner.execute(
            "UPDATE policy.audit_events SET actor_id = $3, previous_hash = $4, hash = $5"
            " WHERE workspace_id = $1 AND sequence = $2",
            legacy.workspace_id,
            sequence,
            *values,
        )
    await owner.execute(
        "UPDATE policy.audit_events SET previous_hash = $2, hash = $3"
        " WHERE workspace_id = $1 AND sequence = 3",
        legacy.workspace_id,
        second,
        third,
    )
    result = await _verify(legacy)
    assert (result.intact, result.first_broken_sequence) == (False, 4)


async def test_entries_under_a_rotated_out_key_verify_while_it_is_kept(
    policy: Policy, database_url: str
) -> None:
    await _activity(policy)  # MAC'd under t1, the fixture's key
    new_key = base64.b64encode(b"rotated-in-audit-mac-key-0123456789abcdef").decode()
    public: Mapping[str, Ed25519PublicKey] = {KEY_ID: policy.private_key.public_key()}

    async def key_source() -> Mapping[str, Ed25519PublicKey]:
        return public

    async def verify_with(keys: str) -> pb.VerifyAuditChainResponse:
        settings = policy_settings(database_url, audit_mac_keys=keys)
        service = PolicyService(settings, key_source=key_source, clock=TestClock(policy.clock()))
        async with (
            testing.running(service, settings) as running,
            grpc.aio.insecure_channel(running.address) as channel,
        ):
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            rotated = replace(policy, stub=stub)
            # A new entry, MAC'd under the key listed first.
            await stub.Authorize(rotated.refund(500, idempotency_key=key("rotated")))
            return await _verify(rotated)

    result = await verify_with(f"t2:{new_key},{AUDIT_MAC_KEYS}")
    assert (result.intact, result.checked) == (True, 7)
    events = (
        await policy.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(workspace_id=policy.workspace_id),
            metadata=testing.admin_metadata(),
        )
    ).events
    assert [e.key_id for e in events] == ["t1"] * 6 + ["t2"]
    # The old server (t1 only) cannot verify what t2 MAC'd: it reports where t2 begins.
    result = await _verify(policy)
    assert (result.intact, result.first_broken_sequence) == (False, 7)
    assert "unknown key" in result.problem
    # Dropping t1 too early leaves its entries unverifiable: keep retired keys.
    result = await verify_with(f"t2:{new_key}")
    assert (result.intact, result.first_broken_sequence) == (False, 1)


async def test_policy_refuses_to_serve_without_an_audit_mac_key(database_url: str) -> None:
    settings = policy_settings(database_url, audit_mac_keys="")
    with pytest.raises(RuntimeError, match="AUDIT_MAC_KEYS"):
        async with testing.running(PolicyService(settings), settings):
            pass
    with pytest.raises(ValueError, match="audit MAC key"):
        policy_settings(database_url, audit_mac_keys="m1:c2hvcnQ=")
