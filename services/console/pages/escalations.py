"""Escalations: the inbox (open ones oldest first, with their age; a filter by state), one
escalation with its transcript and subscription summaries, and Approve (the billing gateway
carries out exactly the escalated action) or Deny with a reason."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.billing.v1 import billing_pb2
from askvault.policy.v1 import policy_pb2
from console import display
from console.backends import BILLING, POLICY, CallFailed
from console.web import Admin, action, console_of, flash, page, redirect, render

# The inbox's filter: its value in the URL -> the state.
STATES = {
    "open": policy_pb2.ESCALATION_STATE_OPEN,
    "approved": policy_pb2.ESCALATION_STATE_APPROVED,
    "executed": policy_pb2.ESCALATION_STATE_EXECUTED,
    "denied": policy_pb2.ESCALATION_STATE_REJECTED,
    "failed": policy_pb2.ESCALATION_STATE_FAILED,
    "all": policy_pb2.ESCALATION_STATE_UNSPECIFIED,
}
PAGE_SIZE = 50


async def inbox(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    state = request.query_params.get("state", "open")
    if state not in STATES:
        state = "open"
    token = request.query_params.get("page", "")
    problems: list[str] = []
    escalations: list[policy_pb2.Escalation] = []
    next_page = ""
    try:
        answer = await backends.call(
            POLICY,
            backends.policy.ListEscalations,
            policy_pb2.ListEscalationsRequest(
                workspace_id=admin.workspace_id,
                state=STATES[state],
                page_size=PAGE_SIZE,
                page_token=token,
                oldest_first=state == "open",
            ),
            admin.token,
        )
        escalations, next_page = list(answer.escalations), answer.next_page_token
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "escalations.html",
        admin,
        problems=problems,
        escalations=escalations,
        state=state,
        states=list(STATES),
        next_page=next_page,
    )


async def detail(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    escalation_id = request.path_params["escalation_id"]
    problems: list[str] = []
    escalation = None
    try:
        answer = await backends.call(
            POLICY,
            backends.policy.GetEscalation,
            policy_pb2.GetEscalationRequest(
                workspace_id=admin.workspace_id, escalation_id=escalation_id
            ),
            admin.token,
        )
        escalation = answer.escalation
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "escalation.html",
        admin,
        problems=problems,
        escalation=escalation,
        escalation_id=escalation_id,
        is_open=escalation is not None and escalation.state == policy_pb2.ESCALATION_STATE_OPEN,
        # One key per rendered form: a double submit carries out the action once.
        approve_key=f"console-approve-{uuid.uuid4()}",
        deny_key=f"console-deny-{uuid.uuid4()}",
    )


def _outcome_text(answer: billing_pb2.CarryOutEscalationResponse) -> tuple[str, str]:
    outcome = display.label(answer.outcome, "outcome")
    if answer.outcome == billing_pb2.ESCALATION_OUTCOME_EXECUTED:
        return f"Approved and executed: {answer.stripe_object_id or 'done'}.", "ok"
    if answer.outcome == billing_pb2.ESCALATION_OUTCOME_FAILED:
        return (
            f"Approved, but it could no longer apply ({answer.failure_reason}); nothing moved. "
            "The customer is told.",
            "error",
        )
    return f"Approved: {outcome}.", "ok"


async def approve(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    escalation_id = request.path_params["escalation_id"]
    answer = await backends.call(
        BILLING,
        backends.billing.CarryOutEscalation,
        billing_pb2.CarryOutEscalationRequest(
            workspace_id=admin.workspace_id,
            escalation_id=escalation_id,
            idempotency_key=form.get("idempotency_key") or f"console-approve-{uuid.uuid4()}",
        ),
        admin.token,
    )
    text, kind = _outcome_text(answer)
    flash(request, text, kind)
    return redirect(f"/escalations/{escalation_id}")


async def deny(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    escalation_id = request.path_params["escalation_id"]
    reason = form.get("reason", "").strip()
    if not reason:
        flash(request, "Say why (the customer is told the reason).", "error")
        return redirect(f"/escalations/{escalation_id}")
    await backends.call(
        BILLING,
        backends.billing.DeclineEscalation,
        billing_pb2.DeclineEscalationRequest(
            workspace_id=admin.workspace_id,
            escalation_id=escalation_id,
            reason=reason,
            idempotency_key=form.get("idempotency_key") or f"console-deny-{uuid.uuid4()}",
        ),
        admin.token,
    )
    flash(request, "Denied; the customer is told the reason.")
    return redirect(f"/escalations/{escalation_id}")


def routes() -> list[Route]:
    return [
        page("/escalations", inbox),
        page("/escalations/{escalation_id}", detail),
        action("/escalations/{escalation_id}/approve", approve),
        action("/escalations/{escalation_id}/deny", deny),
    ]
