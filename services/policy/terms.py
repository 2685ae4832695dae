"""GetWorkspaceTerms: the part of a workspace's bounds a visitor may be told about.

The edge speaks to visitors in the workspace's time zone, offers only the prices policy will
authorize, and may mention the automatic refund caps; it reads all of it here, in one call,
and caches it briefly. Nothing here is secret or per visitor: it is what the workspace's
bounds say, or the defaults when it has none.
"""

from __future__ import annotations

import asyncpg

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy import convert, storage
from policy.domain import bounds


async def workspace_terms(
    pool: asyncpg.Pool, workspace_id: str, defaults: bounds.Bounds
) -> pb.GetWorkspaceTermsResponse:
    """The workspace's terms as the response message (the defaults for a workspace without
    bounds)."""
    async with pool.acquire() as connection:
        stored = await storage.get_bounds(connection, workspace_id)
    in_force = stored or bounds.for_unknown_workspace(defaults)
    return pb.GetWorkspaceTermsResponse(
        time_zone=in_force.time_zone,
        self_serve_price_ids=in_force.self_serve_price_ids,
        refund_caps=[
            common_pb2.Money(amount_minor=cap.amount_minor, currency=cap.currency)
            for cap in in_force.refund_caps
        ],
        counter_period=convert.PERIOD_TO_PB[in_force.counter_period],
        refund_window=convert.duration(in_force.refund_window),
        cancellation_grace=convert.duration(in_force.cancellation_grace),
    )
