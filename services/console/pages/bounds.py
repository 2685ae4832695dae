"""Bounds and confirmation: the bounds in force (policy GetBounds), a form that proposes a
change (ProposeBoundsChange: applied at once unless it loosens a bound past its default),
the pending changes a second admin approves (ApproveBoundsChange; policy refuses the
proposer's own approval and the page shows why), and the history (ListBoundsChanges)."""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from console.backends import POLICY, CallFailed
from console.web import Admin, action, console_of, flash, page, redirect, render
from runtime import currency

PERIODS = {
    "calendar_month": policy_pb2.COUNTER_PERIOD_CALENDAR_MONTH,
    "calendar_week": policy_pb2.COUNTER_PERIOD_CALENDAR_WEEK,
    "calendar_day": policy_pb2.COUNTER_PERIOD_CALENDAR_DAY,
}
_MAX_COUNT = 10_000
DAY = 86400
MINUTE = 60


async def overview(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    problems: list[str] = []
    bounds = defaults = None
    changes: list[policy_pb2.BoundsChange] = []
    try:
        current = await backends.call(
            POLICY,
            backends.policy.GetBounds,
            policy_pb2.GetBoundsRequest(workspace_id=admin.workspace_id),
            admin.token,
        )
        bounds, defaults = current.bounds, current.defaults
    except CallFailed as failure:
        problems.append(failure.text)
    try:
        listed = await backends.call(
            POLICY,
            backends.policy.ListBoundsChanges,
            policy_pb2.ListBoundsChangesRequest(workspace_id=admin.workspace_id),
            admin.token,
        )
        changes = list(listed.changes)
    except CallFailed as failure:
        problems.append(failure.text)
    cap = bounds.refund_caps[0] if bounds is not None and bounds.refund_caps else None
    return render(
        request,
        "bounds.html",
        admin,
        problems=problems,
        bounds=bounds,
        defaults=defaults,
        cap=cap,
        cap_major=str(currency.to_major(cap.amount_minor, cap.currency)) if cap else "",
        pending=[c for c in changes if c.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING],
        history=changes,
        periods=PERIODS,
        propose_key=f"console-bounds-{uuid.uuid4()}",
    )


def _count(form: dict[str, str], name: str) -> int:
    value = int(form.get(name, "").strip())
    if not 0 <= value <= _MAX_COUNT:
        raise ValueError(name)
    return value


def _seconds(current: int, shown: int, unit: int) -> int:
    """A duration from the form: the current one, exactly, when the field still shows it
    (a form rounds to its unit and must not move a bound nobody touched)."""
    return current if shown == current // unit else shown * unit


def proposed_bounds(current: policy_pb2.Bounds, form: dict[str, str]) -> policy_pb2.Bounds:
    """The complete new bounds: the ones in force with the form's fields replaced. Raises
    ValueError naming a field the form got wrong."""
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current)
    bounds.ClearField("updated_at")
    code = form.get("cap_currency", "").strip().lower()
    try:
        major = Decimal(form.get("cap_amount", "").strip())
    except InvalidOperation:
        raise ValueError("refund cap") from None
    minor = currency.to_minor(major, code) if len(code) == 3 and code.isalpha() else None
    if minor is None or minor < 0:
        raise ValueError("refund cap")
    caps = [cap for cap in current.refund_caps if cap.currency != code]
    del bounds.refund_caps[:]
    bounds.refund_caps.extend([common_pb2.Money(amount_minor=minor, currency=code), *caps])
    try:
        bounds.refund_window.FromSeconds(
            _seconds(current.refund_window.seconds, _count(form, "refund_window_days"), DAY)
        )
        bounds.cancellation_grace.FromSeconds(
            _seconds(
                current.cancellation_grace.seconds,
                _count(form, "cancellation_grace_minutes"),
                MINUTE,
            )
        )
        bounds.plan_changes_per_period = _count(form, "plan_changes_per_period")
        bounds.resubscriptions_per_period = _count(form, "resubscriptions_per_period")
    except ValueError as error:
        raise ValueError(str(error) or "a number") from None
    period = form.get("counter_period", "")
    if period not in PERIODS:
        raise ValueError("counter period")
    bounds.counter_period = PERIODS[period]
    bounds.time_zone = form.get("time_zone", "").strip()
    prices = [p.strip() for p in form.get("self_serve_price_ids", "").split(",") if p.strip()]
    del bounds.self_serve_price_ids[:]
    bounds.self_serve_price_ids.extend(prices)
    return bounds


async def propose(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    current = await backends.call(
        POLICY,
        backends.policy.GetBounds,
        policy_pb2.GetBoundsRequest(workspace_id=admin.workspace_id),
        admin.token,
    )
    try:
        bounds = proposed_bounds(current.bounds, form)
    except ValueError as error:
        flash(request, f"Check the {error}: nothing was proposed.", "error")
        return redirect("/bounds")
    answer = await backends.call(
        POLICY,
        backends.policy.ProposeBoundsChange,
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=admin.workspace_id,
            bounds=bounds,
            idempotency_key=form.get("idempotency_key") or f"console-bounds-{uuid.uuid4()}",
        ),
        admin.token,
    )
    change = answer.change
    if change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
        loosened = ", ".join(change.loosened_fields) or "a bound"
        flash(
            request,
            f"Proposed {change.change_id}: it loosens {loosened}, so a second admin "
            "must approve it.",
        )
    else:
        flash(request, f"Applied {change.change_id}.")
    return redirect("/bounds")


async def approve(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    change_id = request.path_params["change_id"]
    answer = await backends.call(
        POLICY,
        backends.policy.ApproveBoundsChange,
        policy_pb2.ApproveBoundsChangeRequest(
            workspace_id=admin.workspace_id,
            change_id=change_id,
            idempotency_key=f"console-approve-bounds-{change_id}-{admin.subject}",
        ),
        admin.token,
    )
    flash(request, f"Approved {answer.change.change_id}: the bounds are in force.")
    return redirect("/bounds")


def routes() -> list[Route]:
    return [
        page("/bounds", overview),
        action("/bounds/propose", propose),
        action("/bounds/changes/{change_id}/approve", approve),
    ]
