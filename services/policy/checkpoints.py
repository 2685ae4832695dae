"""Audit checkpoints: anchors of each workspace's chain outside the database.

Every ``interval_seconds`` the worker reads every workspace's chain head and, for each head
that moved since this process last wrote one, logs a checkpoint MAC'd under the audit MAC key
(``"audit checkpoint"`` with the sealed string in ``audit_checkpoint``). The logs leave the
database's reach (the log pipeline keeps them), so a later rewrite of the chain by someone who
controls the database, even as its owner and even of its tail and head row, is found by
presenting an older checkpoint to VerifyAuditCheckpoint. Replicas each write their own; that
only repeats the same anchors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from policy import audit_log
from policy.domain import audit
from runtime.database import UNAVAILABLE_ERRORS, Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)
# Checkpoints are the audit log's anchors outside the database: written whatever LOG_LEVEL says.
logger.setLevel(logging.INFO)

Clock = Callable[[], datetime]
# Chain heads read per query while writing checkpoints.
_HEADS_PER_PAGE = 500
# Seconds to wait after a failed pass (database down) before trying again.
_RETRY_AFTER_ERROR_SECONDS = 10.0
# Entries read per query while checking a presented checkpoint.
_VERIFY_PAGE = 1000


async def write_checkpoints(
    pool: asyncpg.Pool, keys: audit.MacKeys, now: datetime, written: dict[str, int]
) -> int:
    """Logs a checkpoint for every workspace whose head moved past ``written`` (workspace ->
    sequence last checkpointed, updated here); returns how many were logged."""
    count = 0
    after = ""
    async with pool.acquire() as connection:
        while True:
            heads = await audit_log.audit_heads_page(connection, after, _HEADS_PER_PAGE)
            for head in heads:
                if written.get(head.workspace_id) == head.sequence:
                    continue
                sealed = audit.seal_checkpoint(
                    keys, head.workspace_id, head.sequence, head.hash, now
                )
                logger.info(
                    "audit checkpoint",
                    extra={
                        "workspace_id": head.workspace_id,
                        "audit_sequence": head.sequence,
                        "audit_checkpoint": sealed,
                    },
                )
                written[head.workspace_id] = head.sequence
                count += 1
            if len(heads) < _HEADS_PER_PAGE:
                return count
            after = heads[-1].workspace_id


@dataclass(frozen=True)
class CheckpointCheck:
    """Whether the chain still holds a checkpoint."""

    checkpoint: audit.Checkpoint
    contained: bool
    stored_hash: str  # "" when the chain has no entry at the checkpoint's sequence
    problem: str


async def check_checkpoint(
    connection: Connection, keys: audit.MacKeys, checkpoint: audit.Checkpoint
) -> CheckpointCheck:
    """Recomputes the chain from its start to the checkpoint's sequence and compares the hash
    there: a rewrite anywhere up to it (or the loss of entries up to it) is found, whatever
    the head row now says. Call it in one read-only snapshot."""
    verifier = audit.Verifier(keys, checkpoint.workspace_id)
    after = 0
    while after < checkpoint.sequence and verifier.broken is None:
        page = await audit_log.audit_chain_page(
            connection,
            checkpoint.workspace_id,
            after,
            min(_VERIFY_PAGE, checkpoint.sequence - after),
        )
        for stored in page:
            verifier.feed(stored)
        if not page:
            break
        after = page[-1].sequence
    sequence, stored_hash = verifier.verified_through
    if verifier.broken is not None:
        broken = verifier.broken
        return CheckpointCheck(
            checkpoint,
            False,
            "",
            f"the chain is broken at sequence {broken.first_broken_sequence}, "
            f"at or before the checkpoint's: {broken.problem}",
        )
    if sequence < checkpoint.sequence:
        return CheckpointCheck(
            checkpoint,
            False,
            "",
            f"the chain ends at sequence {sequence}, before the checkpoint's",
        )
    if stored_hash != checkpoint.hash:
        return CheckpointCheck(
            checkpoint,
            False,
            stored_hash,
            "the entry at the checkpoint's sequence differs from the checkpoint: rewritten",
        )
    return CheckpointCheck(checkpoint, True, stored_hash, "")


def checkpoint_worker(
    pool: asyncpg.Pool, keys: audit.MacKeys, clock: Clock, interval_seconds: float
) -> Periodic:
    """Runs ``write_checkpoints`` every ``interval_seconds`` (sooner after a failed pass)
    until stopped; the first checkpoints are written at once."""
    written: dict[str, int] = {}
    return Periodic(
        "policy-audit-checkpoints",
        lambda: write_checkpoints(pool, keys, clock(), written),
        Schedule(
            interval_seconds,
            failure_seconds=min(interval_seconds, _RETRY_AFTER_ERROR_SECONDS),
        ),
        failure_message="audit checkpoints failed",
        quiet=UNAVAILABLE_ERRORS,
    )
