"""Stripe: connect the workspace's account (ConnectAccount registers the webhook endpoint),
and the webhook's health (CheckWebhookSetup: registered, enabled, missing events, events in
the last 24 hours, the last error, the signing secrets with a retire button)."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.billing.v1 import billing_pb2
from console.backends import BILLING, CallFailed
from console.web import Admin, action, console_of, flash, page, redirect, render

# Choices of how long a retired secret still verifies, in seconds.
OVERLAPS = {"0": "at once", "3600": "in 1 hour", "86400": "in 24 hours"}


def _default_webhook_url(request: Request, admin: Admin) -> str:
    settings = console_of(request).settings
    edge = settings.edge_public_url or settings.edge_url
    return f"{edge}/api/stripe/webhooks/{admin.workspace_id}"


async def overview(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    problems: list[str] = []
    setup = None
    try:
        setup = await backends.call(
            BILLING,
            backends.billing.CheckWebhookSetup,
            billing_pb2.CheckWebhookSetupRequest(workspace_id=admin.workspace_id),
            admin.token,
        )
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "stripe.html",
        admin,
        problems=problems,
        setup=setup,
        webhook_url=(setup.url if setup and setup.url else _default_webhook_url(request, admin)),
        overlaps=OVERLAPS,
        connect_key=f"console-connect-{uuid.uuid4()}",
        # Each rendered retire button carries its own key: a double submit retires once.
        form_nonce=uuid.uuid4().hex,
    )


async def connect(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    secret_key = form.get("secret_key", "").strip()
    if not secret_key:
        flash(request, "Paste the account's secret key (sk_test_... first).", "error")
        return redirect("/stripe")
    answer = await backends.call(
        BILLING,
        backends.billing.ConnectAccount,
        billing_pb2.ConnectAccountRequest(
            workspace_id=admin.workspace_id,
            secret_key=secret_key,
            connected_account_id=form.get("connected_account_id", "").strip(),
            webhook_url=form.get("webhook_url", "").strip() or _default_webhook_url(request, admin),
            idempotency_key=form.get("idempotency_key") or f"console-connect-{uuid.uuid4()}",
        ),
        admin.token,
    )
    mode = "live" if answer.livemode else "test"
    flash(request, f"Connected ({mode} mode); webhook endpoint {answer.webhook_endpoint_id}.")
    return redirect("/stripe")


async def retire(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    secret_id = request.path_params["secret_id"]
    overlap = form.get("overlap_seconds", "0")
    if overlap not in OVERLAPS:
        overlap = "0"
    answer = await backends.call(
        BILLING,
        backends.billing.RetireWebhookSecret,
        billing_pb2.RetireWebhookSecretRequest(
            workspace_id=admin.workspace_id,
            secret_id=secret_id,
            overlap_seconds=int(overlap),
            idempotency_key=form.get("idempotency_key")
            or f"console-retire-{secret_id}-{uuid.uuid4()}",
        ),
        admin.token,
    )
    flash(request, f"Secret {answer.secret.secret_id} retires {OVERLAPS[overlap]}.")
    return redirect("/stripe")


def routes() -> list[Route]:
    return [
        page("/stripe", overview),
        action("/stripe/connect", connect),
        action("/stripe/secrets/{secret_id}/retire", retire),
    ]
