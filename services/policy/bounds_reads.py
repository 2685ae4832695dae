"""Reading a workspace's bounds in force (its own, or the defaults when it has none):
GetBounds, all of them, and GetWorkspaceTerms, the part a visitor may be told about.

The edge speaks to visitors in the workspace's time zone, offers only the prices policy will
authorize, and may mention the automatic refund caps; it reads all of it with
GetWorkspaceTerms, in one call, and caches it briefly. Nothing there is secret or per
visitor: it is what the workspace's bounds say.
"""

from __future__ import annotations

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy import convert
from policy.deciding import UseCases
from policy.domain import bounds


async def _in_force(cases: UseCases, workspace_id: str) -> bounds.Bounds:
    async with cases.pool.acquire() as connection:
        return await cases.bounds(connection, workspace_id)


async def get_bounds(cases: UseCases, workspace_id: str) -> pb.GetBoundsResponse:
    """The workspace's bounds in force, with the defaults beside them."""
    in_force = await _in_force(cases, workspace_id)
    return pb.GetBoundsResponse(
        bounds=convert.bounds_pb(workspace_id, in_force),
        defaults=convert.bounds_pb(workspace_id, cases.defaults),
    )


async def workspace_terms(cases: UseCases, workspace_id: str) -> pb.GetWorkspaceTermsResponse:
    """The workspace's terms as the response message (the defaults for a workspace without
    bounds)."""
    in_force = await _in_force(cases, workspace_id)
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
