"""The chainer: links recorded audit entries into each workspace's hash chain.

Deciding records its entries unchained (audit_log.record), so decisions of one workspace do
not queue on its chain head. The chainer links them in batches: for one workspace at a time
it holds the head row (``FOR UPDATE SKIP LOCKED``: with several replicas, one chainer per
workspace at a time, the others move on), reads the recorded entries in recording order,
MACs them onto the chain exactly as before (audit.chain) and removes them from the queue, all
in one transaction. The chain order is the order the chainer sees entries committed.

An entry whose seal does not verify (written by someone without the audit MAC key) is never
linked: it stays in the queue, logged, and VerifyAuditChain reports it. A copy of an entry
already chained (same entry id) is removed without being linked again.

Bounded delay: the worker passes every AUDIT_CHAIN_INTERVAL_MS; readers that must see
everything committed before them (VerifyAuditChain, ListAuditEvents, tests) call
``chain_now``, which waits for the chainer holding the head instead of skipping it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from policy import audit_log, policy_metrics
from policy.domain import audit, pending
from runtime.database import UNAVAILABLE_ERRORS, Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)

# Workspaces one pass looks at; the next pass picks up the rest.
_WORKSPACES_PER_PASS = 100
# Seconds to wait after a failed pass (database down) before trying again.
_RETRY_AFTER_ERROR_SECONDS = 2.0
# Recorded entries read per query when counting what is not chained yet.
_STATUS_PAGE = 1000


async def _chain_batch(
    connection: Connection,
    keys: audit.MacKeys,
    workspace_id: str,
    after: int,
    batch_size: int,
    *,
    wait: bool,
) -> tuple[int, int, bool] | None:
    """One transaction: links up to ``batch_size`` recorded entries after ``after``;
    (entries linked, last pending id read, whether the page was full), or None when another
    chainer holds the head."""
    async with connection.transaction():
        head = await audit_log.claim_head(connection, workspace_id, wait=wait)
        if head is None:
            return None
        page = await audit_log.pending_page(connection, workspace_id, after, batch_size)
        linkable: list[pending.PendingEntry] = []
        removable: list[int] = []
        seen: set[str] = set()
        for item in page:
            recorded = item.entry
            if not pending.sealed_by_policy(keys, recorded):
                policy_metrics.count_chain_failure(policy_metrics.CHAINER)
                logger.error(
                    "audit entry not sealed by policy: left unchained",
                    extra={"workspace_id": workspace_id, "pending_id": recorded.pending_id},
                )
            elif item.chained or recorded.entry_id in seen:
                logger.warning(
                    "audit entry recorded twice: the copy is dropped",
                    extra={"workspace_id": workspace_id, "pending_id": recorded.pending_id},
                )
                removable.append(recorded.pending_id)
            else:
                seen.add(recorded.entry_id)
                linkable.append(recorded)
        chained = audit.chain(keys, workspace_id, head[0], head[1], [p.entry for p in linkable])
        await audit_log.append_chained(
            connection, workspace_id, chained, [p.entry_id for p in linkable]
        )
        await audit_log.remove_pending(
            connection, workspace_id, [p.pending_id for p in linkable] + removable
        )
    last = page[-1].entry.pending_id if page else after
    return len(chained), last, len(page) == batch_size


async def chain_workspace(
    connection: Connection,
    keys: audit.MacKeys,
    workspace_id: str,
    batch_size: int,
    *,
    wait: bool = False,
) -> int:
    """Links every entry of the workspace recorded and committed so far, a batch per
    transaction; returns how many. Without ``wait``, a workspace another chainer holds is
    left to it (returns 0)."""
    total, after = 0, 0
    while True:
        result = await _chain_batch(connection, keys, workspace_id, after, batch_size, wait=wait)
        if result is None:
            return total
        linked, after, full = result
        total += linked
        if not full:
            return total


async def chain_now(
    pool: asyncpg.Pool, keys: audit.MacKeys, workspace_id: str, batch_size: int = 1000
) -> int:
    """Links everything the workspace committed before this call, waiting for a chainer that
    holds its head: after it, the chain holds every entry recorded by a call that returned."""
    async with pool.acquire() as connection:
        return await chain_workspace(connection, keys, workspace_id, batch_size, wait=True)


async def chain_pass(pool: asyncpg.Pool, keys: audit.MacKeys, batch_size: int) -> int:
    """One pass over the workspaces with recorded entries; returns how many were linked."""
    async with pool.acquire() as connection:
        workspaces = await audit_log.pending_workspaces(connection, _WORKSPACES_PER_PASS)
        total = 0
        for workspace_id in workspaces:
            total += await chain_workspace(connection, keys, workspace_id, batch_size)
    return total


@dataclass(frozen=True)
class Unchained:
    """What a workspace recorded that its chain does not hold yet."""

    # Entries waiting for the chainer (committed after the chain was read).
    waiting: int
    # Entries whose seal does not verify: never linked, written without the audit MAC key.
    forged: int


async def unchained(connection: Connection, keys: audit.MacKeys, workspace_id: str) -> Unchained:
    """Counts the workspace's recorded entries that are not in its chain (call it in the
    snapshot the chain was read in)."""
    waiting = forged = 0
    after = 0
    while True:
        page = await audit_log.pending_page(connection, workspace_id, after, _STATUS_PAGE)
        for item in page:
            if item.chained:
                continue
            if pending.sealed_by_policy(keys, item.entry):
                waiting += 1
            else:
                forged += 1
        if len(page) < _STATUS_PAGE:
            return Unchained(waiting, forged)
        after = page[-1].entry.pending_id


def with_unchained(result: audit.Verification, status: Unchained) -> audit.Verification:
    """The chain's verification, failed when entries recorded beside it are forged: they
    were never linked, so the chain alone would pass over them in silence."""
    if not result.intact or not status.forged:
        return result
    return audit.Verification(
        False,
        result.checked,
        0,
        f"{status.forged} recorded entries not yet chained fail their seal: written or"
        " altered without the audit MAC key",
        result.unsigned,
    )


def chain_worker(
    pool: asyncpg.Pool, keys: audit.MacKeys, interval_seconds: float, batch_size: int
) -> Periodic:
    """Runs ``chain_pass`` every ``interval_seconds`` (at least _RETRY_AFTER_ERROR_SECONDS
    apart after a failed pass). A stop comes after the pass in progress, if any (what it left
    is linked by the next chainer, or by this one's next start)."""
    return Periodic(
        "policy-audit-chainer",
        lambda: chain_pass(pool, keys, batch_size),
        Schedule(
            interval_seconds,
            failure_seconds=max(interval_seconds, _RETRY_AFTER_ERROR_SECONDS),
        ),
        failure_message="audit chaining failed",
        quiet=UNAVAILABLE_ERRORS,
    )
