"""The gateway's statements on operations find their rows through an index. Operations only
grow, and a statement run per webhook or per write that walks the whole table grows with it:
the soak's database showed the trace-context look-up of every webhook batch scanning every
operation (a partial index its join could not use)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from billing_gateway import inbox_store, operation_store

# (statement, arguments): the statements a webhook, a write or a reconciliation pass runs.
STATEMENTS: list[tuple[str, Sequence[object]]] = [
    (inbox_store.queries.trace_contexts_of_targets, (["ws_1", "ws_1"], ["sub_1", "ch_1"])),
    (operation_store.queries.get_operation_by_key, ("ws_1", "key_1")),
    (operation_store.queries.get_operation, ("ws_1", "op_1")),
    (operation_store.queries.pending_cancellation, ("ws_1", "cus_1", "sub_1")),
    (operation_store.queries.claim_due_scheduled, (datetime.now(UTC),)),
    (operation_store.queries.claim_in_flight, (datetime.now(UTC), ["op_1"])),
    (operation_store.queries.claim_unresolved, (["op_1"],)),
]


# One workspace's history: settled refunds and plan changes of many customers, their grants
# resolved, traced (the shape a long-running workspace has; the planner walks a table this
# size only when no index fits).
_HISTORY = """
INSERT INTO operations (workspace_id, operation_id, idempotency_key, fingerprint, action, state,
                        grant_id, grant_resolution, stripe_customer_id, target_id,
                        trace_context, created_at, updated_at)
SELECT 'ws_1', 'op_' || n, 'key_' || n, '\\x00', 'refund', 'succeeded', 'grant_' || n,
       'committed', 'cus_' || (n % 500), 'ch_' || n, '{"traceparent": "00-x"}',
       now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval
FROM generate_series(1, 5000) AS n
"""


@pytest.mark.parametrize(
    ("statement", "arguments"),
    STATEMENTS,
    ids=[
        "trace_contexts_of_targets",
        "get_operation_by_key",
        "get_operation",
        "pending_cancellation",
        "claim_due_scheduled",
        "claim_in_flight",
        "claim_unresolved",
    ],
)
async def test_a_statement_on_operations_never_walks_the_whole_table(
    database_url: str, statement: str, arguments: Sequence[object]
) -> None:
    connection = await asyncpg.connect(
        database_url, server_settings={"search_path": "billing_gateway,public"}
    )
    try:
        async with connection.transaction():
            await connection.execute(_HISTORY)
            await connection.execute("ANALYZE operations")
            rows = await connection.fetch(f"EXPLAIN {statement}", *arguments)
    finally:
        await connection.close()
    plan = "\n".join(str(row[0]) for row in rows)
    assert "Seq Scan on operations" not in plan, plan
