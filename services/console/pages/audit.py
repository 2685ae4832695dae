"""The audit log: ListAuditEvents filtered by Stripe customer, actor and action, page by
page, with the result of recomputing the hash chain (VerifyAuditChain)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from console.backends import POLICY, CallFailed
from console.web import Admin, console_of, page, render

PAGE_SIZE = 50
ACTIONS = {
    name.removeprefix("BILLING_ACTION_").lower(): value
    for name, value in common_pb2.BillingAction.items()
    if value != common_pb2.BILLING_ACTION_UNSPECIFIED
}
_MAX_FILTER = 128


async def log(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    query = request.query_params
    customer = query.get("customer", "").strip()[:_MAX_FILTER]
    actor = query.get("actor", "").strip()[:_MAX_FILTER]
    action_name = query.get("action", "")
    problems: list[str] = []
    events: list[policy_pb2.AuditEvent] = []
    next_page = ""
    verification = None
    try:
        answer = await backends.call(
            POLICY,
            backends.policy.ListAuditEvents,
            policy_pb2.ListAuditEventsRequest(
                workspace_id=admin.workspace_id,
                stripe_customer_id=customer,
                actor_id=actor,
                action=ACTIONS.get(action_name, common_pb2.BILLING_ACTION_UNSPECIFIED),
                page_size=PAGE_SIZE,
                page_token=query.get("page", ""),
            ),
            admin.token,
        )
        events, next_page = list(answer.events), answer.next_page_token
    except CallFailed as failure:
        problems.append(failure.text)
    try:
        verification = await backends.call(
            POLICY,
            backends.policy.VerifyAuditChain,
            policy_pb2.VerifyAuditChainRequest(workspace_id=admin.workspace_id),
            admin.token,
        )
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "audit.html",
        admin,
        problems=problems,
        events=events,
        next_page=next_page,
        verification=verification,
        customer=customer,
        actor=actor,
        action=action_name if action_name in ACTIONS else "",
        actions=list(ACTIONS),
    )


def routes() -> list[Route]:
    return [page("/audit", log)]
