"""Reading the audit log: a page of its events, the chain verified from the first entry to
the head, and a checkpoint held against the chain. Everything recorded before a call is
linked into the chain (``chaining``) before it is read.
"""

from __future__ import annotations

from datetime import UTC

import asyncpg
from google.protobuf import timestamp_pb2

from askvault.policy.v1 import policy_pb2 as pb
from policy import audit_log, chaining, checkpoints, convert, policy_metrics
from policy.domain import audit
from runtime import errors

_DEFAULT_PAGE = 100
_MAX_PAGE = 1000
_VERIFY_PAGE = 2000


def _page_size(requested: int) -> int:
    if requested <= 0:
        return _DEFAULT_PAGE
    return min(requested, _MAX_PAGE)


async def list_events(
    pool: asyncpg.Pool, audit_keys: audit.MacKeys, request: pb.ListAuditEventsRequest
) -> pb.ListAuditEventsResponse:
    """A page of the workspace's audit events matching the request's filter."""
    action = convert.ACTION_FROM_PB.get(request.action)
    where = audit_log.AuditFilter(
        contact_id=request.contact_id,
        action=action.value if action else "",
        start_time=(request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None),
        end_time=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
        stripe_customer_id=request.stripe_customer_id,
        actor_id=request.actor_id,
    )
    size = _page_size(request.page_size)
    after = int(request.page_token or "0")
    # Everything recorded before this call is in the chain before it is read.
    await chaining.chain_now(pool, audit_keys, request.workspace_id)
    async with pool.acquire() as connection:
        events = await audit_log.list_audit_events(
            connection, request.workspace_id, where, after, size + 1
        )
    token = ""
    if len(events) > size:
        events = events[:size]
        token = str(events[-1].sequence)
    return pb.ListAuditEventsResponse(
        events=[convert.audit_event_pb(e) for e in events], next_page_token=token
    )


async def verify_chain(
    pool: asyncpg.Pool, audit_keys: audit.MacKeys, workspace_id: str
) -> pb.VerifyAuditChainResponse:
    """The workspace's chain verified, entry by entry, in one snapshot."""
    verifier = audit.Verifier(audit_keys, workspace_id)
    # Everything recorded before this call is linked first; what is recorded later is
    # reported as not yet chained, never passed over in silence.
    await chaining.chain_now(pool, audit_keys, workspace_id)
    # One snapshot: entries appended while we read are not half-seen.
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        head_sequence, head_hash = await audit_log.audit_head(connection, workspace_id)
        after = 0
        while True:
            page = await audit_log.audit_chain_page(connection, workspace_id, after, _VERIFY_PAGE)
            for stored in page:
                if not verifier.feed(stored):
                    break
            if verifier.broken is not None or len(page) < _VERIFY_PAGE:
                break
            after = page[-1].sequence
        waiting = await chaining.unchained(connection, audit_keys, workspace_id)
    result = chaining.with_unchained(verifier.finish(head_sequence, head_hash), waiting)
    if not result.intact:
        policy_metrics.count_chain_failure(policy_metrics.VERIFY_CHAIN)
    return pb.VerifyAuditChainResponse(
        intact=result.intact,
        checked=result.checked,
        first_broken_sequence=result.first_broken_sequence,
        problem=result.problem,
        unsigned_entries=result.unsigned,
        unchained_entries=waiting.waiting,
    )


async def verify_checkpoint(
    pool: asyncpg.Pool, audit_keys: audit.MacKeys, request: pb.VerifyAuditCheckpointRequest
) -> pb.VerifyAuditCheckpointResponse:
    """Whether the chain still holds the entry a checkpoint names, with the hash it had;
    a checkpoint that does not open, or is another workspace's, is INVALID_ARGUMENT."""
    try:
        checkpoint = audit.open_checkpoint(audit_keys, request.checkpoint)
    except audit.CheckpointError as error:
        raise errors.ServiceError(
            errors.Kind.INVALID_ARGUMENT, "AUDIT_CHECKPOINT_INVALID", str(error)
        ) from None
    if checkpoint.workspace_id != request.workspace_id:
        raise errors.ServiceError(
            errors.Kind.INVALID_ARGUMENT,
            "AUDIT_CHECKPOINT_INVALID",
            "the checkpoint is of another workspace",
        )
    async with (
        pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        result = await checkpoints.check_checkpoint(connection, audit_keys, checkpoint)
    if not result.contained:
        policy_metrics.count_chain_failure(policy_metrics.VERIFY_CHECKPOINT)
    taken_at = timestamp_pb2.Timestamp()
    taken_at.FromDatetime(checkpoint.taken_at)
    return pb.VerifyAuditCheckpointResponse(
        contained=result.contained,
        sequence=checkpoint.sequence,
        checkpoint_hash=checkpoint.hash,
        stored_hash=result.stored_hash,
        taken_at=taken_at,
        problem=result.problem,
    )
