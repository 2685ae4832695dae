"""Audit entries are recorded unchained in the decision's transaction and linked into the
workspace's hash chain afterwards by the chainer (policy/chaining.py): decisions of one
workspace never queue on its chain head, yet every decision lands in the verified chain
exactly once, and nobody without the audit MAC key can slip an entry in or take one out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from askvault.policy.v1 import policy_pb2 as pb
from policy import chaining
from runtime import testing

from .conftest import Policy, usd

SHARED = "cus_shared"
CONTACTS = [f"ct_{n}" for n in range(8)]


@pytest.fixture
async def service_role(policy: Policy) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the credentials the policy server runs with."""
    dsn = policy.server._settings.database_url.get_secret_value()
    connection = await asyncpg.connect(dsn, server_settings={"search_path": "policy,public"})
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def owner(policy: Policy) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the role that ran the migrations (it owns the tables and triggers)."""
    connection = await asyncpg.connect(
        policy.database_url, server_settings={"search_path": "policy,public"}
    )
    try:
        yield connection
    finally:
        await connection.close()


async def _verify(policy: Policy) -> pb.VerifyAuditChainResponse:
    response: pb.VerifyAuditChainResponse = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    return response


async def _count(connection: asyncpg.Connection, table: str) -> int:
    return int(
        await connection.fetchval(
            f"SELECT count(*) FROM policy.{table} WHERE workspace_id = $1",  # noqa: S608
            "ws_test",
        )
    )


async def test_many_racing_decisions_on_one_customer_stay_within_its_bound_and_each_is_chained_once(
    policy: Policy, owner: asyncpg.Connection
) -> None:
    """48 decisions at once for one customer through 8 contacts, $20 each against its $500
    cap, while two chainers (two replicas) link the chain as it grows: exactly 25 allowed,
    the counters exact, and every decision in the verified chain once."""
    requests = [
        policy.refund(2000, contact_id=contact, customer=SHARED)
        for _ in range(6)
        for contact in CONTACTS
    ]
    done = asyncio.Event()
    replicas = [
        await asyncpg.connect(policy.database_url, server_settings={"search_path": "policy"})
        for _ in range(2)
    ]

    async def chainer(connection: asyncpg.Connection) -> None:
        while not done.is_set():
            await chaining.chain_workspace(connection, policy.audit_keys, policy.workspace_id, 7)
            await asyncio.sleep(0)

    chainers = [asyncio.create_task(chainer(connection)) for connection in replicas]
    try:
        responses = await asyncio.gather(*(policy.stub.Authorize(r) for r in requests))
    finally:
        done.set()
        await asyncio.gather(*chainers)
        for connection in replicas:
            await connection.close()
    allowed = [r for r in responses if r.decision == pb.DECISION_ALLOW]
    assert len(allowed) == 25
    assert {r.reason for r in responses if r.decision != pb.DECISION_ALLOW} == {
        pb.DECISION_REASON_REFUND_OVER_CAP
    }
    assert await policy.customer_counter(SHARED) == 50000
    visitors = [await policy.counter(contact) for contact in CONTACTS]
    assert sum(visitors) == 50000

    result = await _verify(policy)
    assert (result.intact, result.problem, result.unchained_entries) == (True, "", 0)
    # The bounds the fixture set, one decision per request, and one escalation per refusal.
    assert result.checked == 1 + 48 + 23
    rows = await owner.fetch(
        "SELECT kind, subject_id, entry_id FROM audit_events WHERE workspace_id = $1",
        policy.workspace_id,
    )
    decisions = [row for row in rows if row["kind"] == "decision"]
    assert len(decisions) == 48
    granted = Counter(row["subject_id"] for row in decisions if row["subject_id"].startswith("gr"))
    assert granted == Counter(r.grant.grant_id for r in allowed)
    assert len({row["entry_id"] for row in rows if row["entry_id"]}) == len(rows)
    assert await _count(owner, "audit_pending") == 0


async def test_a_decision_is_recorded_unchained_and_linked_before_the_chain_is_read(
    policy: Policy, owner: asyncpg.Connection
) -> None:
    await policy.chain()
    before = await _count(owner, "audit_events")
    response = await policy.stub.Authorize(policy.refund(1000))
    assert response.decision == pb.DECISION_ALLOW
    # The test server's chainer passes once a minute: the entry waits, recorded and sealed.
    assert await _count(owner, "audit_events") == before
    assert await _count(owner, "audit_pending") == 1
    status = await chaining.unchained(owner, policy.audit_keys, policy.workspace_id)
    assert (status.waiting, status.forged) == (1, 0)
    # Reading the chain links what was recorded before the call, deterministically.
    listed = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    assert listed.events[-1].subject_id == response.grant.grant_id
    assert await _count(owner, "audit_events") == before + 1
    assert await _count(owner, "audit_pending") == 0
    result = await _verify(policy)
    assert (result.intact, result.checked, result.unchained_entries) == (True, before + 1, 0)


async def test_the_service_cannot_change_or_remove_an_entry_before_it_is_chained(
    policy: Policy, service_role: asyncpg.Connection
) -> None:
    await policy.stub.Authorize(policy.refund(1000))
    for statement in (
        "UPDATE audit_pending SET outcome = 'DENY:REFUND_OVER_CAP'",
        "TRUNCATE audit_pending",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await service_role.execute(statement)
    # It may delete (to empty the queue), but the database refuses an unchained entry.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="only chained entries"):
        await service_role.execute("DELETE FROM audit_pending")
    result = await _verify(policy)
    assert (result.intact, result.checked) == (True, 2)


async def test_an_entry_slipped_in_without_the_key_is_never_chained_and_fails_verification(
    policy: Policy, service_role: asyncpg.Connection
) -> None:
    await policy.chain()
    await service_role.execute(
        "INSERT INTO audit_pending (workspace_id, entry_id, occurred_at, actor_kind, actor_id,"
        " kind, contact_id, stripe_customer_id, action, amount_minor, currency, outcome,"
        " subject_id, key_id, seal)"
        " VALUES ($1, 'ae_forged', now(), 'admin', 'admin-alice', 'bounds.applied', '', '',"
        " '', 0, '', 'APPLIED', 'bc_forged', 't1', repeat('0', 64))",
        policy.workspace_id,
    )
    await policy.stub.Authorize(policy.refund(1000))
    result = await _verify(policy)
    assert not result.intact
    assert "fail their seal" in result.problem
    # The genuine decision behind it was linked; the forgery stays out of the chain.
    assert result.checked == 2
    assert not await service_role.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject_id = 'bc_forged'"
    )


async def test_an_entry_altered_while_waiting_is_never_chained(
    policy: Policy, owner: asyncpg.Connection
) -> None:
    await policy.chain()
    await policy.stub.Authorize(policy.refund(40000))
    await owner.execute("ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_append_only")
    await owner.execute("UPDATE audit_pending SET amount_minor = 100")
    await owner.execute("ALTER TABLE audit_pending ENABLE TRIGGER audit_pending_append_only")
    result = await _verify(policy)
    assert not result.intact
    assert "fail their seal" in result.problem
    assert result.checked == 1


async def test_a_replayed_copy_of_a_chained_entry_is_dropped_not_chained_twice(
    policy: Policy, owner: asyncpg.Connection, service_role: asyncpg.Connection
) -> None:
    await policy.stub.Authorize(policy.refund(1000))
    copy = await owner.fetchrow("SELECT * FROM audit_pending WHERE kind = 'decision'")
    assert copy is not None
    await policy.chain()
    columns = [name for name in copy.keys() if name != "pending_id"]  # noqa: SIM118 (a Record)
    await service_role.execute(
        f"INSERT INTO audit_pending ({', '.join(columns)})"  # noqa: S608
        f" VALUES ({', '.join(f'${n + 1}' for n in range(len(columns)))})",
        *(copy[name] for name in columns),
    )
    result = await _verify(policy)
    assert (result.intact, result.checked, result.unchained_entries) == (True, 2, 0)
    assert await _count(owner, "audit_pending") == 0


async def test_the_usage_in_the_reply_is_the_counter_after_the_reservation(
    policy: Policy,
) -> None:
    """The counters and the grant are one statement now; the reply still shows them."""
    first = await policy.stub.Authorize(policy.refund(1500))
    second = await policy.stub.Authorize(policy.refund(2500))
    assert (first.decision, second.decision) == (pb.DECISION_ALLOW, pb.DECISION_ALLOW)
    assert second.usage.used_amount == usd(4000)
    assert second.usage.remaining_amount == usd(46000)
    assert await policy.counter() == 4000
    assert await policy.customer_counter() == 4000
