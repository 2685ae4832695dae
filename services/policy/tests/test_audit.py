"""The audit log: every decision and outcome chained, append-only in the database, and
verification that finds altered and deleted rows."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy.domain import audit
from runtime import testing

from .conftest import Policy, key


async def _activity(policy: Policy) -> None:
    allowed = await policy.stub.Authorize(policy.refund(1000))
    await policy.stub.Commit(
        pb.CommitRequest(
            workspace_id=policy.workspace_id,
            grant_id=allowed.grant.grant_id,
            stripe_object_id="re_1",
            idempotency_key=key(),
        )
    )
    await policy.stub.Authorize(policy.refund(1000, contact_id="ct_bob", customer="cus_bob"))
    await policy.stub.Authorize(policy.plan_change())
    await policy.stub.Authorize(policy.refund(1000, assertion=""))
    await policy.chain()


async def _verify(policy: Policy) -> pb.VerifyAuditChainResponse:
    response: pb.VerifyAuditChainResponse = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    return response


def _entry(row: asyncpg.Record) -> audit.Entry:
    """The entry a stored row holds."""
    return audit.Entry(
        occurred_at=row["occurred_at"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        kind=row["kind"],
        contact_id=row["contact_id"],
        stripe_customer_id=row["stripe_customer_id"],
        action=row["action"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        outcome=row["outcome"],
        subject_id=row["subject_id"],
        confirmation=(
            audit.confirmation_from_document(json.loads(row["confirmation"]))
            if row["confirmation"] is not None
            else None
        ),
    )


@pytest.fixture
async def superuser(policy: Policy) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the test database, as a tamperer would have."""
    connection = await asyncpg.connect(policy.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def test_every_decision_and_outcome_is_chained(policy: Policy) -> None:
    await _activity(policy)
    events = (
        await policy.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(workspace_id=policy.workspace_id),
            metadata=testing.admin_metadata(),
        )
    ).events
    kinds = [e.kind for e in events]
    # The bounds seeded by the fixture, then the activity.
    assert kinds == [
        "bounds.applied",
        "decision",
        "grant.committed",
        "decision",
        "decision",
        "decision",
    ]
    assert [e.sequence for e in events] == list(range(1, 7))
    assert events[0].previous_hash == audit.GENESIS_HASH
    assert all(b.previous_hash == a.hash for a, b in itertools.pairwise(events))
    assert events[1].outcome == "ALLOW:WITHIN_BOUNDS"
    assert events[1].actor == common_pb2.Actor(kind=common_pb2.ACTOR_KIND_VISITOR, id="ct_alice")
    assert events[1].amount.amount_minor == 1000
    assert events[5].outcome == "DENY:IDENTITY_REQUIRED"
    result = await _verify(policy)
    assert (result.intact, result.checked, result.first_broken_sequence) == (True, 6, 0)


async def test_filters_and_paging(policy: Policy) -> None:
    await _activity(policy)
    by_contact = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(workspace_id=policy.workspace_id, contact_id="ct_bob"),
        metadata=testing.admin_metadata(),
    )
    assert [e.contact_id for e in by_contact.events] == ["ct_bob"]
    plan_changes = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(
            workspace_id=policy.workspace_id, action=common_pb2.BILLING_ACTION_CHANGE_PLAN
        ),
        metadata=testing.admin_metadata(),
    )
    assert len(plan_changes.events) == 1
    sequences: list[int] = []
    token = ""
    while True:
        page = await policy.stub.ListAuditEvents(
            pb.ListAuditEventsRequest(
                workspace_id=policy.workspace_id, page_size=4, page_token=token
            ),
            metadata=testing.admin_metadata(),
        )
        sequences.extend(e.sequence for e in page.events)
        token = page.next_page_token
        if not token:
            break
    assert sequences == list(range(1, 7))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE policy.audit_events SET outcome = 'ALLOW' WHERE sequence = 2",
        "DELETE FROM policy.audit_events WHERE sequence = 2",
        "TRUNCATE policy.audit_events",
    ],
)
async def test_the_database_refuses_changes_to_the_log(
    policy: Policy, superuser: asyncpg.Connection, statement: str
) -> None:
    await _activity(policy)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await superuser.execute(statement)
    assert (await _verify(policy)).intact


async def _tamper(connection: asyncpg.Connection, statement: str) -> None:
    await connection.execute(
        "ALTER TABLE policy.audit_events DISABLE TRIGGER audit_events_append_only"
    )
    await connection.execute(statement)
    await connection.execute(
        "ALTER TABLE policy.audit_events ENABLE TRIGGER audit_events_append_only"
    )


@pytest.mark.parametrize(
    ("statement", "sequence", "problem"),
    [
        (
            "UPDATE policy.audit_events SET outcome = 'DENY:REFUND_OVER_CAP' WHERE sequence = 3",
            3,
            "altered",
        ),
        ("UPDATE policy.audit_events SET amount_minor = 1 WHERE sequence = 2", 2, "altered"),
        ("DELETE FROM policy.audit_events WHERE sequence = 4", 4, "missing"),
        ("DELETE FROM policy.audit_events WHERE sequence = 6", 6, "missing at the end"),
    ],
)
async def test_verification_finds_altered_and_deleted_rows(
    policy: Policy, superuser: asyncpg.Connection, statement: str, sequence: int, problem: str
) -> None:
    await _activity(policy)
    await _tamper(superuser, statement)
    result = await _verify(policy)
    assert not result.intact
    assert result.first_broken_sequence == sequence
    assert problem in result.problem


async def test_a_rehashed_row_is_found_altered(
    policy: Policy, superuser: asyncpg.Connection
) -> None:
    await _activity(policy)
    row = await superuser.fetchrow(
        "SELECT * FROM policy.audit_events WHERE workspace_id = $1 AND sequence = 2",
        policy.workspace_id,
    )
    assert row is not None
    forged = replace(_entry(row), amount_minor=99)
    new_hash = audit.entry_hash(row["previous_hash"], policy.workspace_id, 2, forged)
    await _tamper(
        superuser,
        f"UPDATE policy.audit_events SET amount_minor = 99, hash = '{new_hash}'"  # noqa: S608
        " WHERE sequence = 2",
    )
    result = await _verify(policy)
    assert (result.intact, result.first_broken_sequence) == (False, 2)
    assert "altered" in result.problem
