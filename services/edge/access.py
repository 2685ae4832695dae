"""Content gating for the workspace's docs site or widget: ``POST /v1/access/check`` answers
whether the verified visitor may see a piece of content ("enterprise docs": plan tier at
least enterprise; "trial guide": an active trial), from the contact's audience tags in
identity. The visitor proves who they are as in a chat turn (user_hash or token); an
unverified visitor is refused, never "allowed" by default."""

from __future__ import annotations

import logging

import grpc
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from askvault.identity.v1 import identity_pb2 as ipb
from edge import api_models, pipeline
from edge.http_api import Edge, identity_of
from edge.http_middleware import error
from edge.peers import error_reason, is_unavailable
from edge.turn import Request

logger = logging.getLogger(__name__)

PATH = "/v1/access/check"
_STATUSES = {
    "active": ipb.CUSTOMER_STATUS_ACTIVE,
    "trialing": ipb.CUSTOMER_STATUS_TRIALING,
    "past_due": ipb.CUSTOMER_STATUS_PAST_DUE,
    "canceled": ipb.CUSTOMER_STATUS_CANCELED,
}
_TIERS = {
    "free": ipb.PLAN_TIER_FREE,
    "starter": ipb.PLAN_TIER_STARTER,
    "growth": ipb.PLAN_TIER_GROWTH,
    "business": ipb.PLAN_TIER_BUSINESS,
    "enterprise": ipb.PLAN_TIER_ENTERPRISE,
}


def requirement_of(given: api_models.AccessRequirement) -> ipb.AccessRequirement:
    """The identity service's requirement from the request's."""
    return ipb.AccessRequirement(
        customer_statuses=[_STATUSES[s] for s in given.customer_statuses],
        minimum_plan_tier=_TIERS.get(given.minimum_plan_tier or "", ipb.PLAN_TIER_UNSPECIFIED),
        require_active_trial=given.require_active_trial,
    )


class ContentAccess:
    """``POST /v1/access/check``, bound to the edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    def routes(self) -> list[Route]:
        """The routes this module serves."""
        return [Route(PATH, self.check, methods=["POST"])]

    async def check(self, request: HttpRequest) -> Response:
        edge = self._edge
        if not await edge.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        body = await edge.json_body(request)
        if isinstance(body, JSONResponse):
            return body
        given = api_models.check(api_models.AccessCheckRequest, body)
        if isinstance(given, dict):
            return error(400, "INVALID_ARGUMENT", "invalid access check", given)
        workspace_id = given.workspace_id
        visitor = identity_of(given.visitor)
        requirement = requirement_of(given.requirement)
        peers = edge.peers
        try:
            verified = await pipeline.verify(
                peers,
                Request(
                    workspace_id=str(workspace_id),
                    conversation_id="access-check",
                    visitor=visitor,
                    text="",
                    channel="access",
                ),
            )
            if verified is None:
                return error(401, "VISITOR_NOT_VERIFIED", "the visitor's identity is not proven")
            contact = verified[0]
            answer = await peers.identity.CheckAccess(
                ipb.CheckAccessRequest(
                    workspace_id=str(workspace_id),
                    contact_id=contact.contact_id,
                    requirement=requirement,
                ),
                timeout=peers.timeout(),
            )
        except grpc.aio.AioRpcError as failure:
            logger.warning(
                "access check failed",
                extra={"code": failure.code().name, "reason": error_reason(failure)},
            )
            if is_unavailable(failure):
                return error(503, "DEPENDENCY_UNAVAILABLE", "try again shortly")
            return error(502, "DEPENDENCY_ERROR", "a service refused the request")
        return JSONResponse(
            {
                "allowed": answer.allowed,
                # The requirement's parts that were not met, by their JSON names.
                "unmet": list(answer.unmet),
            },
            # A per-visitor answer: never cached by a shared cache.
            headers={"Cache-Control": "private, no-store"},
        )
