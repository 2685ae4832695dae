"""Reading contacts: one by id, those bound to a Stripe customer, and (for an admin) the
legacy unsigned bindings still to review, a page at a time."""

from __future__ import annotations

import asyncpg

from askvault.identity.v1 import identity_pb2 as pb
from identity import convert, storage
from runtime import errors, paging
from runtime.database import Connection

_LEGACY_PAGE_DEFAULT = 50
_LEGACY_PAGE_MAX = 200


async def locked_or_not_found(
    connection: Connection, workspace_id: str, contact_id: str
) -> storage.ContactRecord:
    """The contact, locked for the caller's transaction; NOT_FOUND when there is none."""
    record = await storage.get_contact(connection, workspace_id, contact_id, for_update=True)
    if record is None:
        raise errors.not_found("contact")
    return record


async def contact_or_not_found(
    pool: asyncpg.Pool, workspace_id: str, contact_id: str
) -> storage.ContactRecord:
    """The contact; NOT_FOUND when there is none."""
    async with pool.acquire() as connection:
        record = await storage.get_contact(connection, workspace_id, contact_id)
    if record is None:
        raise errors.not_found("contact")
    return record


async def by_customer(
    pool: asyncpg.Pool, workspace_id: str, stripe_customer_id: str
) -> pb.FindContactsByCustomerResponse:
    """The workspace's contacts bound to the Stripe customer."""
    async with pool.acquire() as connection:
        records = await storage.contacts_by_customer(connection, workspace_id, stripe_customer_id)
    return pb.FindContactsByCustomerResponse(contacts=[convert.contact_pb(r) for r in records])


async def legacy_bindings(
    pool: asyncpg.Pool, request: pb.ListLegacyBindingsRequest
) -> pb.ListLegacyBindingsResponse:
    """A page of the contacts bound by the legacy unsigned path, oldest first."""
    size = paging.page_size(request.page_size, _LEGACY_PAGE_DEFAULT, _LEGACY_PAGE_MAX)
    after = paging.decode_cursor(request.page_token)
    async with pool.acquire() as connection:
        records = await storage.legacy_bindings(connection, request.workspace_id, after, size + 1)
    page, more = records[:size], len(records) > size
    return pb.ListLegacyBindingsResponse(
        contacts=[convert.contact_pb(r) for r in page],
        next_page_token=(
            paging.encode_cursor(page[-1].created_at, page[-1].contact_id) if more else ""
        ),
    )
