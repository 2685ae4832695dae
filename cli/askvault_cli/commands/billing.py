"""Stripe connection, webhook health and signing secrets, failed-payment recovery."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from google.protobuf import timestamp_pb2

from askvault.billing.v1 import billing_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin
from askvault_cli.failures import CliError, ExitCode

STRIPE_KEY_ENV = "STRIPE_SECRET_KEY"

webhook_secret_app = typer.Typer(help="The webhook signing secrets.", no_args_is_help=True)
recovery_app = typer.Typer(help="Failed-payment recovery.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("connect-stripe")(connect_stripe)
    app.command("webhook-check")(webhook_check)
    app.add_typer(webhook_secret_app, name="webhook-secret")


def connect_stripe(
    ctx: typer.Context,
    webhook_url: Annotated[
        str, typer.Option(help="The public URL Stripe delivers webhooks to (the edge's).")
    ],
    secret_key_stdin: Annotated[
        bool,
        typer.Option(
            "--secret-key-stdin",
            help=f"Read the Stripe secret key from stdin (default: ${STRIPE_KEY_ENV}).",
        ),
    ] = False,
    connected_account: Annotated[
        str, typer.Option(help="A connected account id (acct_...), sent as Stripe-Account.")
    ] = "",
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Connect the workspace's Stripe account and register its webhook endpoint. The secret
    key is never an argument (it would stay in shell history and ps)."""
    session = admin(ctx)
    key = sys.stdin.readline().strip() if secret_key_stdin else os.environ.get(STRIPE_KEY_ENV, "")
    if not key:
        raise CliError(
            f"no Stripe secret key: set {STRIPE_KEY_ENV} or pass --secret-key-stdin",
            ExitCode.USAGE,
            reason="NO_STRIPE_KEY",
        )
    answer = session.call(
        session.billing.ConnectAccount,
        billing_pb2.ConnectAccountRequest(
            workspace_id=session.workspace,
            secret_key=key,
            connected_account_id=connected_account,
            webhook_url=webhook_url,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.pairs(
            f"Stripe connected for {session.workspace}",
            [
                ("webhook endpoint", answer.webhook_endpoint_id),
                ("mode", "live" if answer.livemode else "test"),
                ("events", ", ".join(answer.enabled_events)),
            ],
        ),
    )


def webhook_check(ctx: typer.Context) -> None:
    """Whether the webhook endpoint is registered, enabled and delivering: events in the
    last 24 hours, the last processing error, the signing secrets. Exit code 1 when it is
    not registered, disabled or misses event types."""
    session = admin(ctx)
    answer = session.call(
        session.billing.CheckWebhookSetup,
        billing_pb2.CheckWebhookSetupRequest(workspace_id=session.workspace),
    )

    def render() -> None:
        output.pairs(
            f"Webhook of {session.workspace}",
            [
                ("url", answer.url),
                ("registered", answer.registered),
                ("enabled", answer.enabled),
                ("missing event types", ", ".join(answer.missing_event_types) or "none"),
                ("events received (24h)", answer.events_received_24h),
                ("last event received", output.when(answer.last_event_received_at) or "never"),
                ("last error", answer.last_error or "none"),
                ("last error at", output.when(answer.last_error_at)),
            ],
        )
        output.table(
            "Signing secrets",
            ("secret id", "created", "retires at", "retired"),
            (
                (s.secret_id, output.when(s.created_at), output.when(s.retires_at), s.retired)
                for s in answer.webhook_secrets
            ),
        )

    output.show(session.options.json_output, answer, render)
    problems = [
        *([] if answer.registered else ["not registered in Stripe"]),
        *([] if answer.enabled or not answer.registered else ["disabled"]),
        *(
            [f"missing events {', '.join(answer.missing_event_types)}"]
            if answer.missing_event_types
            else []
        ),
    ]
    if problems:
        raise CliError(
            f"the webhook endpoint of {session.workspace} is not set up: {'; '.join(problems)}",
            ExitCode.ERROR,
            reason="WEBHOOK_NOT_SET_UP",
        )


@webhook_secret_app.command("retire")
def retire_webhook_secret(
    ctx: typer.Context,
    secret_id: Annotated[str, typer.Argument(help="The secret's id (the endpoint id, we_...).")],
    overlap_seconds: Annotated[
        int,
        typer.Option(min=0, max=2_592_000, help="Seconds it still verifies; 0 retires it now."),
    ] = 0,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Retire a webhook signing secret, at once or after an overlap."""
    session = admin(ctx)
    answer = session.call(
        session.billing.RetireWebhookSecret,
        billing_pb2.RetireWebhookSecretRequest(
            workspace_id=session.workspace,
            secret_id=secret_id,
            overlap_seconds=overlap_seconds,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.pairs(
            "Webhook secret",
            [
                ("secret id", answer.secret.secret_id),
                ("retires at", output.when(answer.secret.retires_at)),
                ("retired", answer.secret.retired),
            ],
        ),
    )


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@recovery_app.command("stats")
def recovery_stats(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, max=3660, help="The period: the last N days.")] = 28,
) -> None:
    """Failed payments, recovered within 48 h and the rate: the period's total, then one
    row per week (oldest first; the first week may be shorter)."""
    session = admin(ctx)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=days)
    total = session.call(
        session.billing.GetRecoveryStats,
        billing_pb2.GetRecoveryStatsRequest(
            workspace_id=session.workspace, start_time=_stamp(start), end_time=_stamp(end)
        ),
    )
    weeks: list[tuple[datetime, datetime, billing_pb2.GetRecoveryStatsResponse]] = []
    week_end = end
    while week_end > start:
        week_start = max(start, week_end - timedelta(days=7))
        figures = session.call(
            session.billing.GetRecoveryStats,
            billing_pb2.GetRecoveryStatsRequest(
                workspace_id=session.workspace,
                start_time=_stamp(week_start),
                end_time=_stamp(week_end),
            ),
        )
        weeks.append((week_start, week_end, figures))
        week_end = week_start
    weeks.reverse()

    def row(label: str, figures: billing_pb2.GetRecoveryStatsResponse) -> tuple[object, ...]:
        return (
            label,
            figures.failed,
            figures.recovered_within_48h,
            figures.recovered,
            f"{figures.recovery_rate:.1%}",
        )

    document = {
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "total": output.as_dict(total),
        "weeks": [
            {"start_time": s.isoformat(), "end_time": e.isoformat(), **output.as_dict(f)}
            for s, e, f in weeks
        ],
    }
    output.show(
        session.options.json_output,
        document,
        lambda: output.table(
            f"Recovery of {session.workspace}, last {days} days (rate: recovered within 48 h)",
            ("period", "failed", "recovered ≤48h", "recovered", "rate"),
            [
                *(row(f"{s:%Y-%m-%d} to {e:%Y-%m-%d}", f) for s, e, f in weeks),
                row("total", total),
            ],
        ),
    )
