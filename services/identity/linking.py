"""LinkCustomer: binding a contact to a Stripe customer, chosen outright by an admin or
matched among the candidates a caller found (by the contact's signed email, or by the
workspace's customer metadata key). Runs once per idempotency key."""

from __future__ import annotations

import asyncpg

from askvault.identity.v1 import identity_pb2 as pb
from identity import contact_reads, convert, storage
from identity.domain import contacts
from runtime import idempotency
from runtime.database import Connection


async def _chosen(
    connection: Connection, request: pb.LinkCustomerRequest, record: storage.ContactRecord
) -> tuple[str, str]:
    """The customer the request binds the contact to, and the binding's source."""
    target = request.WhichOneof("target")
    if target == "stripe_customer_id":
        return request.stripe_customer_id, contacts.ADMIN
    if target == "email_match":
        customer_id = contacts.match_customer(
            record.email,
            [
                contacts.Candidate(c.stripe_customer_id, c.email)
                for c in request.email_match.candidates
            ],
        )
        return customer_id, contacts.rebinding_source(
            record.stripe_customer_id, record.binding_source, customer_id, contacts.SIGNED_EMAIL
        )
    configured = await storage.get_customer_metadata_key(connection, request.workspace_id)
    customer_id = contacts.match_by_metadata(
        record.user_id,
        request.metadata_match.metadata_key,
        configured or "",
        [
            contacts.Candidate(c.stripe_customer_id, c.email, c.metadata_value)
            for c in request.metadata_match.candidates
        ],
    )
    return customer_id, contacts.rebinding_source(
        record.stripe_customer_id, record.binding_source, customer_id, contacts.CUSTOMER_METADATA
    )


async def link_customer(
    pool: asyncpg.Pool, request: pb.LinkCustomerRequest
) -> pb.LinkCustomerResponse:
    """The contact, bound as the request says (unchanged when it already is)."""

    async def link(connection: Connection) -> pb.LinkCustomerResponse:
        record = await contact_reads.locked_or_not_found(
            connection, request.workspace_id, request.contact_id
        )
        customer_id, source = await _chosen(connection, request, record)
        linked = record
        if (customer_id, source) != (record.stripe_customer_id, record.binding_source):
            linked = await storage.link_customer(
                connection, request.workspace_id, request.contact_id, customer_id, source
            )
        return pb.LinkCustomerResponse(contact=convert.contact_pb(linked))

    return await idempotency.run_once(
        pool, request.workspace_id, request.idempotency_key, request, pb.LinkCustomerResponse, link
    )
