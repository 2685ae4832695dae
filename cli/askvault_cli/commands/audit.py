"""The audit log: filtered listing and chain verification."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import typer
from google.protobuf import timestamp_pb2

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from askvault_cli import output
from askvault_cli.commands import admin
from askvault_cli.failures import CliError, ExitCode

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


class Action(enum.StrEnum):
    refund = "refund"
    change_plan = "change-plan"
    cancel_subscription = "cancel-subscription"
    pause_subscription = "pause-subscription"
    resume_subscription = "resume-subscription"
    retry_payment = "retry-payment"
    start_resubscription = "start-resubscription"


def _billing_action(action: Action) -> common_pb2.BillingAction.ValueType:
    return common_pb2.BillingAction.Value("BILLING_ACTION_" + action.name.upper())


def _timestamp(text: str, option: str) -> timestamp_pb2.Timestamp:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option} {text!r}: not an ISO 8601 time (2026-11-30 or 2026-11-30T12:00:00Z)",
            ExitCode.USAGE,
            reason="INVALID_OPTION",
        ) from None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@app.command("list")
def list_events(
    ctx: typer.Context,
    customer: Annotated[
        str | None, typer.Option(help="Only this Stripe customer (cus_...).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only this actor (an admin's subject, a service, a contact).")
    ] = None,
    action: Annotated[Action | None, typer.Option(help="Only this billing action.")] = None,
    contact: Annotated[str | None, typer.Option(help="Only this contact.")] = None,
    since: Annotated[str | None, typer.Option(help="At or after this time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
) -> None:
    """Audit events in chain order, filtered."""
    session = admin(ctx)
    request = policy_pb2.ListAuditEventsRequest(
        workspace_id=session.workspace,
        stripe_customer_id=customer or "",
        actor_id=actor or "",
        contact_id=contact or "",
        action=_billing_action(action) if action else common_pb2.BILLING_ACTION_UNSPECIFIED,
    )
    if since:
        request.start_time.CopyFrom(_timestamp(since, "--since"))
    if until:
        request.end_time.CopyFrom(_timestamp(until, "--until"))
    events: list[policy_pb2.AuditEvent] = []
    while len(events) < limit:
        request.page_size = min(1000, limit - len(events))
        page = session.call(session.policy.ListAuditEvents, request)
        events.extend(page.events)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    document = policy_pb2.ListAuditEventsResponse(events=events[:limit])
    output.show(
        session.options.json_output,
        document,
        lambda: output.table(
            f"Audit log of {session.workspace}",
            ("seq", "when", "actor", "kind", "action", "amount", "customer", "outcome", "subject"),
            (
                (
                    e.sequence,
                    output.when(e.occurred_at),
                    e.actor.id,
                    e.kind,
                    output.enum_name(
                        common_pb2.BillingAction.Name(e.action), "BILLING_ACTION_"
                    ).replace("unspecified", ""),
                    output.money(e.amount),
                    e.stripe_customer_id,
                    e.outcome,
                    e.subject_id,
                )
                for e in document.events
            ),
            wrap=("kind", "outcome"),
        ),
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Also check a checkpoint policy logged (its audit_checkpoint field)."),
    ] = None,
) -> None:
    """Recompute the hash chain; exit code 1 when it is broken (or misses the checkpoint)."""
    session = admin(ctx)
    chain = session.call(
        session.policy.VerifyAuditChain,
        policy_pb2.VerifyAuditChainRequest(workspace_id=session.workspace),
    )
    contained: policy_pb2.VerifyAuditCheckpointResponse | None = None
    if checkpoint:
        contained = session.call(
            session.policy.VerifyAuditCheckpoint,
            policy_pb2.VerifyAuditCheckpointRequest(
                workspace_id=session.workspace, checkpoint=checkpoint
            ),
        )
    document = {
        "chain": output.as_dict(chain),
        "checkpoint": output.as_dict(contained) if contained is not None else None,
    }

    def render() -> None:
        rows: list[tuple[str, object]] = [
            ("intact", chain.intact),
            ("checked", chain.checked),
            ("first broken sequence", chain.first_broken_sequence or ""),
            ("problem", chain.problem),
            ("unsigned (pre-MAC) entries", chain.unsigned_entries),
            ("recorded, not yet chained", chain.unchained_entries),
        ]
        if contained is not None:
            rows += [
                ("checkpoint contained", contained.contained),
                ("checkpoint sequence", contained.sequence),
                ("checkpoint problem", contained.problem),
            ]
        output.pairs(f"Audit chain of {session.workspace}", rows)

    output.show(session.options.json_output, document, render)
    if not chain.intact or (contained is not None and not contained.contained):
        raise CliError(
            f"the audit chain of {session.workspace} is broken: "
            f"{chain.problem or (contained.problem if contained else '')}",
            ExitCode.ERROR,
            reason="AUDIT_CHAIN_BROKEN",
        )
