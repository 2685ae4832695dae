"""Reading messages: one by id, and a contact's or the whole workspace's, newest first, a
page at a time (optionally of one status, as the dead letters are read)."""

from __future__ import annotations

import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import convert, message_store
from runtime import errors, paging

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


async def get_message(pool: asyncpg.Pool, workspace_id: str, message_id: str) -> pb.Message:
    """The message; NOT_FOUND when the workspace has none with this id."""
    async with pool.acquire() as connection:
        record = await message_store.get_message(connection, workspace_id, message_id)
    if record is None:
        raise errors.not_found("message")
    return convert.message_pb(record)


async def list_messages(
    pool: asyncpg.Pool, request: pb.ListMessagesRequest
) -> pb.ListMessagesResponse:
    """A page of the request's messages (the contact's, or every one of the workspace)."""
    after = paging.decode_cursor(request.page_token)
    size = request.page_size or DEFAULT_PAGE_SIZE
    async with pool.acquire() as connection:
        records = await message_store.list_messages(
            connection,
            request.workspace_id,
            request.contact_id,
            after,
            size + 1,
            status=convert.PB_TO_STATUS.get(request.status, ""),
        )
    page = records[:size]
    return pb.ListMessagesResponse(
        messages=[convert.message_pb(r) for r in page],
        next_page_token=paging.encode_cursor(page[-1].created_at, page[-1].message_id)
        if len(records) > size
        else "",
    )
