"""A contact's billing tags: UpdateTags applies what the billing gateway saw in Stripe
(newer facts only, per tag), CheckAccess answers whether the tags meet a requirement."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from askvault.identity.v1 import identity_pb2 as pb
from identity import contact_reads, convert, storage
from identity.domain import contacts
from runtime import idempotency
from runtime.database import Connection


async def update_tags(
    pool: asyncpg.Pool, request: pb.UpdateTagsRequest, update: contacts.TagUpdate
) -> pb.UpdateTagsResponse:
    """The selected contacts (by id, or all bound to a Stripe customer) with ``update``
    applied; runs once per idempotency key."""

    async def apply(connection: Connection) -> pb.UpdateTagsResponse:
        if request.WhichOneof("selector") == "contact_id":
            selected = [
                await contact_reads.locked_or_not_found(
                    connection, request.workspace_id, request.contact_id
                )
            ]
        else:
            selected = await storage.contacts_by_customer(
                connection, request.workspace_id, request.stripe_customer_id, for_update=True
            )
        updated = []
        for record in selected:
            tags = contacts.apply_update(record.tags, update)
            if tags != record.tags:
                record = await storage.save_tags(
                    connection, record.workspace_id, record.contact_id, tags
                )
            updated.append(convert.contact_pb(record))
        return pb.UpdateTagsResponse(contacts=updated)

    return await idempotency.run_once(
        pool, request.workspace_id, request.idempotency_key, request, pb.UpdateTagsResponse, apply
    )


async def check_access(
    pool: asyncpg.Pool, workspace_id: str, contact_id: str, requirement: contacts.Requirement
) -> pb.CheckAccessResponse:
    """Whether the contact's tags meet ``requirement`` now, and which parts they do not."""
    record = await contact_reads.contact_or_not_found(pool, workspace_id, contact_id)
    unmet = contacts.unmet_requirements(record.tags, requirement, datetime.now(UTC))
    return pb.CheckAccessResponse(allowed=not unmet, unmet=unmet)
