"""Bounds (two-admin approval when a change loosens one past its default) and the
confirmation flags that live among them."""

from __future__ import annotations

import enum
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import json_format

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin
from askvault_cli.failures import CliError, ExitCode
from runtime import currency

app = typer.Typer(
    help="The workspace's policy bounds: caps, windows, grace, self-serve prices.",
    no_args_is_help=True,
)
confirmation_app = typer.Typer(
    help=(
        "The confirmation flags of the bounds (confirm_refunds, confirm_plan_changes). Policy "
        "asks the person to confirm every money action whatever they say: the flags are kept "
        "for compatibility and waive nothing."
    ),
    no_args_is_help=True,
)


class Plan(enum.StrEnum):
    free = "free"
    team = "team"
    business = "business"
    enterprise = "enterprise"


class Period(enum.StrEnum):
    month = "month"
    week = "week"
    day = "day"


class ChangeState(enum.StrEnum):
    all = "all"
    pending = "pending"
    applied = "applied"
    superseded = "superseded"


_PLANS = {
    Plan.free: policy_pb2.ASK_VAULT_PLAN_FREE,
    Plan.team: policy_pb2.ASK_VAULT_PLAN_TEAM,
    Plan.business: policy_pb2.ASK_VAULT_PLAN_BUSINESS,
    Plan.enterprise: policy_pb2.ASK_VAULT_PLAN_ENTERPRISE,
}
_PERIODS = {
    Period.month: policy_pb2.COUNTER_PERIOD_CALENDAR_MONTH,
    Period.week: policy_pb2.COUNTER_PERIOD_CALENDAR_WEEK,
    Period.day: policy_pb2.COUNTER_PERIOD_CALENDAR_DAY,
}
_CHANGE_STATES = {
    ChangeState.all: policy_pb2.BOUNDS_CHANGE_STATE_UNSPECIFIED,
    ChangeState.pending: policy_pb2.BOUNDS_CHANGE_STATE_PENDING,
    ChangeState.applied: policy_pb2.BOUNDS_CHANGE_STATE_APPLIED,
    ChangeState.superseded: policy_pb2.BOUNDS_CHANGE_STATE_SUPERSEDED,
}


def parse_cap(text: str) -> common_pb2.Money | None:
    """``usd=50.00`` -> 5000 USD minor units; ``usd=none`` -> None (no automatic refunds in
    that currency). Raises CliError for anything else."""
    code, _, amount = text.partition("=")
    code = code.strip().lower()
    if len(code) != 3 or not code.isalpha() or not amount:
        raise CliError(
            f"--refund-cap {text!r}: write CURRENCY=AMOUNT in major units (usd=50.00)",
            ExitCode.USAGE,
            reason="INVALID_OPTION",
        )
    if amount.strip().lower() == "none":
        return None
    try:
        major = Decimal(amount.strip())
    except InvalidOperation:
        major = Decimal("NaN")
    minor = currency.to_minor(major, code) if major.is_finite() and major >= 0 else None
    if minor is None:
        raise CliError(
            f"--refund-cap {text!r}: not an amount of {code.upper()}",
            ExitCode.USAGE,
            reason="INVALID_OPTION",
        )
    return common_pb2.Money(amount_minor=minor, currency=code)


def current_bounds(session: calls.Admin) -> tuple[policy_pb2.Bounds, policy_pb2.Bounds | None]:
    """The bounds in force and the defaults (GetBounds). Where policy answers GetBounds to
    its peer services only, the newest applied change stands in, without defaults."""
    try:
        answer = session.call(
            session.policy.GetBounds, policy_pb2.GetBoundsRequest(workspace_id=session.workspace)
        )
    except CliError as failure:
        if failure.reason not in ("SERVICE_CREDENTIAL_REQUIRED", "CALLER_NOT_ALLOWED"):
            raise
        applied = session.call(
            session.policy.ListBoundsChanges,
            policy_pb2.ListBoundsChangesRequest(
                workspace_id=session.workspace, state=policy_pb2.BOUNDS_CHANGE_STATE_APPLIED
            ),
        )
        if not applied.changes:
            raise
        output.note("policy answers GetBounds to services only: showing the newest applied change")
        return applied.changes[0].proposed, None
    return answer.bounds, answer.defaults


def _bounds_rows(bounds: policy_pb2.Bounds) -> list[tuple[str, object]]:
    return [
        (
            "plan",
            output.enum_name(policy_pb2.AskVaultPlan.Name(bounds.askvault_plan), "ASK_VAULT_PLAN_"),
        ),
        ("refund caps", ", ".join(output.money(cap) for cap in bounds.refund_caps) or "none"),
        ("refund window", output.span(bounds.refund_window)),
        ("plan changes per period", bounds.plan_changes_per_period),
        ("resubscriptions per period", bounds.resubscriptions_per_period),
        ("cancellation grace", output.span(bounds.cancellation_grace)),
        (
            "counter period",
            output.enum_name(
                policy_pb2.CounterPeriod.Name(bounds.counter_period), "COUNTER_PERIOD_"
            ),
        ),
        ("time zone", bounds.time_zone or "(default)"),
        ("self-serve prices", ", ".join(bounds.self_serve_price_ids) or "(any eligible)"),
        ("confirm refunds (flag)", bounds.confirm_refunds),
        ("confirm plan changes (flag)", bounds.confirm_plan_changes),
        ("updated", output.when(bounds.updated_at)),
    ]


@app.command("get")
def get(ctx: typer.Context) -> None:
    """The bounds in force, beside the defaults a change is compared with."""
    session = admin(ctx)
    bounds, defaults = current_bounds(session)
    document = {
        "bounds": output.as_dict(bounds),
        "defaults": output.as_dict(defaults) if defaults is not None else None,
    }

    def render() -> None:
        rows = _bounds_rows(bounds)
        if defaults is None:
            output.pairs(f"Bounds of {session.workspace}", rows)
            return
        default_rows = dict(_bounds_rows(defaults))
        output.table(
            f"Bounds of {session.workspace}",
            ("bound", "in force", "default"),
            [(name, value, default_rows.get(name, "")) for name, value in rows[:-1]],
            wrap=("in force", "default"),
        )

    output.show(session.options.json_output, document, render)


def _change_rows(change: policy_pb2.BoundsChange) -> list[tuple[str, object]]:
    return [
        ("change id", change.change_id),
        (
            "state",
            output.enum_name(
                policy_pb2.BoundsChangeState.Name(change.state), "BOUNDS_CHANGE_STATE_"
            ),
        ),
        ("proposed by", change.proposed_by),
        ("approved by", change.approved_by),
        ("loosened", ", ".join(change.loosened_fields) or "nothing"),
        ("created", output.when(change.created_at)),
        ("applied", output.when(change.applied_at)),
    ]


def _propose(
    session: calls.Admin, bounds: policy_pb2.Bounds, idempotency_key: str | None
) -> policy_pb2.BoundsChange:
    bounds.workspace_id = session.workspace
    bounds.ClearField("updated_at")
    answer: policy_pb2.ProposeBoundsChangeResponse = session.call(
        session.policy.ProposeBoundsChange,
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=session.workspace,
            bounds=bounds,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    return answer.change


def _show_change(session: calls.Admin, change: policy_pb2.BoundsChange) -> None:
    def render() -> None:
        output.pairs("Bounds change", _change_rows(change))
        if change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
            output.note(f"waiting for a second admin: askvault bounds approve {change.change_id}")

    output.show(session.options.json_output, change, render)


@app.command("propose")
def propose(
    ctx: typer.Context,
    refund_cap: Annotated[
        list[str] | None,
        typer.Option(
            help="CURRENCY=AMOUNT in major units (usd=50.00), or CURRENCY=none; repeatable."
        ),
    ] = None,
    refund_window_days: Annotated[int | None, typer.Option(min=0)] = None,
    plan_changes: Annotated[
        int | None, typer.Option(min=0, help="Plan changes per period.")
    ] = None,
    resubscriptions: Annotated[
        int | None, typer.Option(min=0, help="Resubscriptions per period.")
    ] = None,
    cancellation_grace_hours: Annotated[int | None, typer.Option(min=0)] = None,
    counter_period: Annotated[Period | None, typer.Option()] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA zone (Europe/Paris).")] = None,
    self_serve_price: Annotated[
        list[str] | None, typer.Option(help="A price customers may switch to; repeatable.")
    ] = None,
    any_price: Annotated[
        bool, typer.Option(help="Clear the self-serve list: any eligible price.")
    ] = False,
    plan: Annotated[Plan | None, typer.Option(help="The workspace's AskVault plan.")] = None,
    from_json: Annotated[
        Path | None,
        typer.Option(help="Complete Bounds as JSON (as `bounds get --json` prints them)."),
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Propose new bounds: the bounds in force with the given changes. Applied at once,
    unless a bound loosens past its default: then a second admin approves."""
    session = admin(ctx)
    # Options first: a malformed one fails before any call.
    new_caps = [
        (text.partition("=")[0].strip().lower(), parse_cap(text)) for text in refund_cap or []
    ]
    if any_price and self_serve_price:
        raise CliError(
            "--any-price and --self-serve-price exclude each other",
            ExitCode.USAGE,
            reason="INVALID_OPTION",
        )
    if from_json is not None:
        bounds = policy_pb2.Bounds()
        try:
            json_format.Parse(from_json.read_text(), bounds)
        except (OSError, json_format.ParseError) as error:
            raise CliError(
                f"--from-json {from_json}: {error}", ExitCode.USAGE, reason="INVALID_OPTION"
            ) from None
    else:
        bounds, _ = current_bounds(session)
    caps = {cap.currency.lower(): cap for cap in bounds.refund_caps}
    for code, cap in new_caps:
        if cap is None:
            caps.pop(code, None)
        else:
            caps[code] = cap
    if refund_cap:
        del bounds.refund_caps[:]
        bounds.refund_caps.extend(caps[code] for code in sorted(caps))
    if refund_window_days is not None:
        bounds.refund_window.seconds = refund_window_days * 86400
    if plan_changes is not None:
        bounds.plan_changes_per_period = plan_changes
    if resubscriptions is not None:
        bounds.resubscriptions_per_period = resubscriptions
    if cancellation_grace_hours is not None:
        bounds.cancellation_grace.seconds = cancellation_grace_hours * 3600
    if counter_period is not None:
        bounds.counter_period = _PERIODS[counter_period]
    if time_zone is not None:
        bounds.time_zone = time_zone
    if any_price or self_serve_price:
        del bounds.self_serve_price_ids[:]
        bounds.self_serve_price_ids.extend(self_serve_price or [])
    if plan is not None:
        bounds.askvault_plan = _PLANS[plan]
    _show_change(session, _propose(session, bounds, idempotency_key))


@app.command("approve")
def approve(
    ctx: typer.Context,
    change_id: Annotated[str, typer.Argument(help="The pending change.")],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Approve a pending change as the second admin (not the one who proposed it)."""
    session = admin(ctx)
    answer = session.call(
        session.policy.ApproveBoundsChange,
        policy_pb2.ApproveBoundsChangeRequest(
            workspace_id=session.workspace,
            change_id=change_id,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    _show_change(session, answer.change)


@app.command("history")
def history(
    ctx: typer.Context,
    state: Annotated[
        ChangeState, typer.Option(help="Only changes in this state.")
    ] = ChangeState.all,
) -> None:
    """The workspace's bounds changes, newest first."""
    session = admin(ctx)
    answer = session.call(
        session.policy.ListBoundsChanges,
        policy_pb2.ListBoundsChangesRequest(
            workspace_id=session.workspace, state=_CHANGE_STATES[state]
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.table(
            f"Bounds changes of {session.workspace}",
            ("change id", "state", "proposed by", "approved by", "loosened", "created", "applied"),
            ([value for _, value in _change_rows(change)] for change in answer.changes),
            wrap=("loosened",),
        ),
    )


def _set_confirmation(ctx: typer.Context, on: bool, idempotency_key: str | None) -> None:
    session = admin(ctx)
    bounds, _ = current_bounds(session)
    bounds.confirm_refunds = on
    bounds.confirm_plan_changes = on
    change = _propose(session, bounds, idempotency_key)
    output.note(
        "note: policy asks the person to confirm every money action whatever these flags say"
    )
    _show_change(session, change)


@confirmation_app.command("on")
def confirmation_on(ctx: typer.Context, idempotency_key: IdempotencyKey = None) -> None:
    """Propose confirm_refunds and confirm_plan_changes = true."""
    _set_confirmation(ctx, True, idempotency_key)


@confirmation_app.command("off")
def confirmation_off(ctx: typer.Context, idempotency_key: IdempotencyKey = None) -> None:
    """Propose the flags = false (through the same two-admin flow as any bound; it waives
    no confirmation)."""
    _set_confirmation(ctx, False, idempotency_key)


@confirmation_app.command("get")
def confirmation_get(ctx: typer.Context) -> None:
    """The flags in force."""
    session = admin(ctx)
    bounds, _ = current_bounds(session)
    document = {
        "confirm_refunds": bounds.confirm_refunds,
        "confirm_plan_changes": bounds.confirm_plan_changes,
        "every_money_action_confirmed": True,
    }
    output.show(
        session.options.json_output,
        document,
        lambda: output.pairs(
            f"Confirmation in {session.workspace}",
            [
                ("confirm refunds (flag)", bounds.confirm_refunds),
                ("confirm plan changes (flag)", bounds.confirm_plan_changes),
                ("every money action confirmed by the person", "yes (policy, always)"),
            ],
        ),
    )
