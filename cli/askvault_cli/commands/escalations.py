"""Escalations: the inbox (oldest open first), one case, approve (carried out by the billing
gateway) and deny (the customer is told the reason)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated

import typer

from askvault.billing.v1 import billing_pb2
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin
from askvault_cli.failures import CliError, ExitCode

app = typer.Typer(help="Escalations handed to a human.", no_args_is_help=True)

# Pages read by `show` when policy answers GetEscalation to services only.
_SHOW_PAGES = 20


class State(enum.StrEnum):
    all = "all"
    open = "open"
    approved = "approved"
    rejected = "rejected"
    executed = "executed"
    failed = "failed"


_STATES = {
    State.all: policy_pb2.ESCALATION_STATE_UNSPECIFIED,
    State.open: policy_pb2.ESCALATION_STATE_OPEN,
    State.approved: policy_pb2.ESCALATION_STATE_APPROVED,
    State.rejected: policy_pb2.ESCALATION_STATE_REJECTED,
    State.executed: policy_pb2.ESCALATION_STATE_EXECUTED,
    State.failed: policy_pb2.ESCALATION_STATE_FAILED,
}


def _state(escalation: policy_pb2.Escalation) -> str:
    return output.enum_name(policy_pb2.EscalationState.Name(escalation.state), "ESCALATION_STATE_")


def _action(escalation: policy_pb2.Escalation) -> str:
    name = output.enum_name(common_pb2.BillingAction.Name(escalation.action), "BILLING_ACTION_")
    return "hand-off" if name == "unspecified" else name


def _age(escalation: policy_pb2.Escalation) -> str:
    if not escalation.created_at.seconds:
        return ""
    seconds = int((datetime.now(UTC) - escalation.created_at.ToDatetime(UTC)).total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m"


@app.command("list")
def list_escalations(
    ctx: typer.Context,
    state: Annotated[State, typer.Option(help="Only escalations in this state.")] = State.open,
    newest_first: Annotated[
        bool, typer.Option(help="Newest first (default: oldest first, an inbox).")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=5000, help="At most this many.")] = 50,
) -> None:
    """Escalations, oldest open ones first by default."""
    session = admin(ctx)
    found: list[policy_pb2.Escalation] = []
    token = ""
    while len(found) < limit:
        page = session.call(
            session.policy.ListEscalations,
            policy_pb2.ListEscalationsRequest(
                workspace_id=session.workspace,
                state=_STATES[state],
                page_size=min(500, limit - len(found)),
                page_token=token,
                oldest_first=not newest_first,
            ),
        )
        found.extend(page.escalations)
        token = page.next_page_token
        if not token:
            break
    document = policy_pb2.ListEscalationsResponse(escalations=found[:limit])
    output.show(
        session.options.json_output,
        document,
        lambda: output.table(
            f"Escalations of {session.workspace} ({state.value})",
            ("escalation id", "state", "age", "action", "amount", "customer", "reason"),
            (
                (
                    e.escalation_id,
                    _state(e),
                    _age(e),
                    _action(e),
                    output.money(e.details.amount),
                    e.stripe_customer_id,
                    e.reason,
                )
                for e in document.escalations
            ),
            wrap=("reason",),
        ),
    )


def _find(session: calls.Admin, escalation_id: str) -> policy_pb2.Escalation:
    """GetEscalation; where policy answers it to services only, the admin's ListEscalations
    pages stand in."""
    try:
        answer: policy_pb2.GetEscalationResponse = session.call(
            session.policy.GetEscalation,
            policy_pb2.GetEscalationRequest(
                workspace_id=session.workspace, escalation_id=escalation_id
            ),
        )
        return answer.escalation
    except CliError as failure:
        if failure.reason not in ("SERVICE_CREDENTIAL_REQUIRED", "CALLER_NOT_ALLOWED"):
            raise
    token = ""
    for _ in range(_SHOW_PAGES):
        page: policy_pb2.ListEscalationsResponse = session.call(
            session.policy.ListEscalations,
            policy_pb2.ListEscalationsRequest(
                workspace_id=session.workspace, page_size=500, page_token=token
            ),
        )
        for escalation in page.escalations:
            if escalation.escalation_id == escalation_id:
                return escalation
        token = page.next_page_token
        if not token:
            break
    raise CliError(
        f"escalation {escalation_id} not found in workspace {session.workspace}",
        ExitCode.NOT_FOUND,
        reason="NOT_FOUND",
    )


@app.command("show")
def show(
    ctx: typer.Context, escalation_id: Annotated[str, typer.Argument(help="The escalation.")]
) -> None:
    """One escalation with its context (transcript and subscription summaries)."""
    session = admin(ctx)
    escalation = _find(session, escalation_id)
    details = escalation.details
    output.show(
        session.options.json_output,
        escalation,
        lambda: output.pairs(
            f"Escalation {escalation.escalation_id}",
            [
                ("state", _state(escalation)),
                ("opened", output.when(escalation.created_at)),
                ("age", _age(escalation)),
                ("reason", escalation.reason),
                ("action", _action(escalation)),
                ("amount", output.money(details.amount)),
                ("charge", details.charge_id),
                ("subscription", details.subscription_id),
                ("invoice", details.invoice_id),
                ("target price", details.target_price_id),
                ("customer", escalation.stripe_customer_id),
                ("contact", escalation.contact_id),
                ("conversation", escalation.context.conversation_id),
                ("transcript", escalation.context.transcript_summary),
                ("subscription summary", escalation.context.subscription_summary),
                ("note", escalation.context.note),
                ("decided by", escalation.decided_by),
                ("decided", output.when(escalation.decided_at)),
                ("decision note", escalation.decision_note),
                ("stripe object", escalation.stripe_object_id),
                ("failure", escalation.failure_reason),
                ("finished", output.when(escalation.finished_at)),
            ],
        ),
    )


def _outcome(value: billing_pb2.EscalationOutcome.ValueType) -> str:
    return output.enum_name(billing_pb2.EscalationOutcome.Name(value), "ESCALATION_OUTCOME_")


@app.command("approve")
def approve(
    ctx: typer.Context,
    escalation_id: Annotated[str, typer.Argument(help="The escalation.")],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Approve and carry out exactly the escalated action (within your own bounds); the
    customer is told. An action that can no longer apply moves nothing."""
    session = admin(ctx)
    answer = session.call(
        session.billing.CarryOutEscalation,
        billing_pb2.CarryOutEscalationRequest(
            workspace_id=session.workspace,
            escalation_id=escalation_id,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.pairs(
            f"Escalation {escalation_id}",
            [
                ("outcome", _outcome(answer.outcome)),
                ("operation", answer.operation_id),
                ("stripe object", answer.stripe_object_id),
                ("failure", answer.failure_reason),
                ("customer notice", answer.notice_message_id),
            ],
        ),
    )
    if answer.outcome == billing_pb2.ESCALATION_OUTCOME_FAILED:
        raise CliError(
            f"escalation {escalation_id} could no longer apply: {answer.failure_reason}; "
            "nothing moved and the customer is told",
            ExitCode.CONFLICT,
            reason=answer.failure_reason,
        )


@app.command("deny")
def deny(
    ctx: typer.Context,
    escalation_id: Annotated[str, typer.Argument(help="The escalation.")],
    reason: Annotated[str, typer.Option(help="Why, in words the customer is told.")],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Decline an escalation; the customer is told the reason."""
    session = admin(ctx)
    answer = session.call(
        session.billing.DeclineEscalation,
        billing_pb2.DeclineEscalationRequest(
            workspace_id=session.workspace,
            escalation_id=escalation_id,
            reason=reason,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.pairs(
            f"Escalation {escalation_id}",
            [
                ("outcome", _outcome(answer.outcome)),
                ("customer notice", answer.notice_message_id),
            ],
        ),
    )
