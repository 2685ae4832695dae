"""Sending a dead message again (an admin's resend): the same message, id and dedup key go
back to the outbox with their attempts starting over, so it stays one logical message; a
message the provider accepted (or one still queued) is refused."""

from __future__ import annotations

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import convert, message_store
from notifier.domain import outbox
from runtime import errors, idempotency
from runtime.database import Connection

# What a resend may start from: given up on, or failed after the provider accepted it.
RESENDABLE = frozenset({outbox.DEAD, outbox.FAILED})


def _refused(status: str) -> errors.ServiceError:
    why = (
        "the message is still queued"
        if status == outbox.QUEUED
        else f"the message was already {status}; only a dead or failed one is sent again"
    )
    return errors.ServiceError(
        errors.Kind.FAILED_PRECONDITION,
        "MESSAGE_NOT_RESENDABLE",
        why,
        metadata={"status": status},
    )


async def requeue(
    connection: Connection, workspace_id: str, message_id: str
) -> message_store.MessageRecord:
    """Queues the dead or failed message again, due now; NOT_FOUND or FAILED_PRECONDITION
    otherwise. Runs inside the caller's transaction (the idempotency key's)."""
    record = await message_store.lock_message(connection, workspace_id, message_id)
    if record is None:
        raise errors.not_found("message")
    if record.status not in RESENDABLE:
        raise _refused(record.status)
    requeued = await message_store.requeue_for_resend(connection, workspace_id, message_id)
    assert requeued is not None
    return requeued


async def resend(pool: asyncpg.Pool, request: pb.ResendMessageRequest) -> pb.ResendMessageResponse:
    """The message, queued again; runs once per idempotency key (a repeated call answers the
    first call's message and queues nothing more)."""

    async def run(connection: Connection) -> pb.ResendMessageResponse:
        record = await requeue(connection, request.workspace_id, request.message_id)
        return pb.ResendMessageResponse(message=convert.message_pb(record))

    return await idempotency.run_once(
        pool,
        request.workspace_id,
        request.idempotency_key,
        request,
        pb.ResendMessageResponse,
        run,
    )
