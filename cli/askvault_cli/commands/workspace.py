"""Workspace settings kept by identity (how visitors are bound to customers) and by the
notifier (sender, reply-to, hand-off destinations, send limits)."""

from __future__ import annotations

import base64
import os
import sys
from typing import Annotated

import typer

from askvault.identity.v1 import identity_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin
from askvault_cli.failures import CliError, ExitCode

app = typer.Typer(help="Workspace settings.", no_args_is_help=True)
settings_app = typer.Typer(
    help="Identity's and the notifier's settings of the workspace.", no_args_is_help=True
)
app.add_typer(settings_app, name="settings")


def _read(
    session: calls.Admin,
) -> tuple[identity_pb2.WorkspaceSettings, notifier_pb2.WorkspaceSettings]:
    identity = session.call(
        session.identity.GetWorkspaceSettings,
        identity_pb2.GetWorkspaceSettingsRequest(workspace_id=session.workspace),
    ).settings
    notifier = session.call(
        session.notifier.GetWorkspaceSettings,
        notifier_pb2.GetWorkspaceSettingsRequest(workspace_id=session.workspace),
    ).settings
    return identity, notifier


def _show(
    session: calls.Admin,
    identity: identity_pb2.WorkspaceSettings,
    notifier: notifier_pb2.WorkspaceSettings,
) -> None:
    document = {"identity": output.as_dict(identity), "notifier": output.as_dict(notifier)}
    output.show(
        session.options.json_output,
        document,
        lambda: output.table(
            f"Settings of {session.workspace}",
            ("service", "setting", "value"),
            [
                ("identity", "customer_metadata_key", identity.customer_metadata_key),
                ("notifier", "sender_name", notifier.sender_name),
                ("notifier", "from_address", notifier.from_address),
                ("notifier", "reply_to", notifier.reply_to),
                ("notifier", "agent_inbox", notifier.agent_inbox),
                ("notifier", "helpdesk_webhook_url", notifier.helpdesk_webhook_url),
                ("notifier", "helpdesk_webhook_signed", notifier.helpdesk_webhook_signed),
                ("notifier", "contact_hourly_limit", notifier.contact_hourly_limit),
                ("notifier", "workspace_hourly_limit", notifier.workspace_hourly_limit),
                ("notifier", "whatsapp_phone_number_id", notifier.whatsapp_phone_number_id),
            ],
        ),
    )


@settings_app.command("get")
def get(ctx: typer.Context) -> None:
    """Both services' settings of the workspace."""
    session = admin(ctx)
    identity, notifier = _read(session)
    _show(session, identity, notifier)


@settings_app.command("set")
def set_settings(
    ctx: typer.Context,
    customer_metadata_key: Annotated[
        str | None,
        typer.Option(help="identity: the Stripe customer metadata key naming your user id."),
    ] = None,
    sender_name: Annotated[str | None, typer.Option(help="notifier: sender name.")] = None,
    from_address: Annotated[str | None, typer.Option(help="notifier: sender address.")] = None,
    reply_to: Annotated[str | None, typer.Option(help="notifier: reply-to address.")] = None,
    agent_inbox: Annotated[
        str | None, typer.Option(help="notifier: where hand-offs are emailed.")
    ] = None,
    helpdesk_webhook_url: Annotated[
        str | None, typer.Option(help="notifier: where hand-offs are posted as JSON.")
    ] = None,
    contact_hourly_limit: Annotated[int | None, typer.Option(min=0)] = None,
    workspace_hourly_limit: Annotated[int | None, typer.Option(min=0)] = None,
    whatsapp_phone_number_id: Annotated[str | None, typer.Option()] = None,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Change some settings; the others keep their values. Only the services whose
    settings change are called."""
    session = admin(ctx)
    identity, notifier = _read(session)
    key = calls.idempotency_key(idempotency_key)
    if customer_metadata_key is not None:
        identity.customer_metadata_key = customer_metadata_key
        identity.ClearField("self_serve_price_ids")
        identity = session.call(
            session.identity.UpdateWorkspaceSettings,
            identity_pb2.UpdateWorkspaceSettingsRequest(
                workspace_id=session.workspace, settings=identity, idempotency_key=f"{key}-identity"
            ),
        ).settings
    notifier_changes = {
        "sender_name": sender_name,
        "from_address": from_address,
        "reply_to": reply_to,
        "agent_inbox": agent_inbox,
        "helpdesk_webhook_url": helpdesk_webhook_url,
        "contact_hourly_limit": contact_hourly_limit,
        "workspace_hourly_limit": workspace_hourly_limit,
        "whatsapp_phone_number_id": whatsapp_phone_number_id,
    }
    changed = {name: value for name, value in notifier_changes.items() if value is not None}
    if changed:
        for name, value in changed.items():
            setattr(notifier, name, value)
        notifier.workspace_id = session.workspace
        notifier = session.call(
            session.notifier.UpdateWorkspaceSettings,
            notifier_pb2.UpdateWorkspaceSettingsRequest(
                settings=notifier, idempotency_key=f"{key}-notifier"
            ),
        ).settings
    _show(session, identity, notifier)


# Random bytes of a generated helpdesk signing secret (Standard Webhooks: 24 to 64).
HELPDESK_SECRET_BYTES = 32


@app.command("helpdesk-secret")
def helpdesk_secret(
    ctx: typer.Context,
    secret_stdin: Annotated[
        bool,
        typer.Option(
            "--secret-stdin", help="Read the secret (whsec_<base64>) from stdin (one line)."
        ),
    ] = False,
    clear: Annotated[
        bool, typer.Option(help="Remove the secret: hand-offs to the helpdesk go unsigned.")
    ] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Set or rotate the secret that signs hand-offs to the helpdesk webhook (Standard
    Webhooks); without options a random one is generated and printed once. The new secret
    signs from the next delivery on: let the helpdesk accept both until it has the new one."""
    session = admin(ctx)
    if secret_stdin and clear:
        raise CliError("give either --secret-stdin or --clear", ExitCode.USAGE, reason="NO_SECRET")
    generated = not (secret_stdin or clear)
    if generated:
        raw = base64.b64encode(os.urandom(HELPDESK_SECRET_BYTES)).decode()
        text = f"whsec_{raw}"
    elif secret_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
    else:
        text = ""
    answer = session.call(
        session.notifier.SetHelpdeskWebhookSecret,
        notifier_pb2.SetHelpdeskWebhookSecretRequest(
            workspace_id=session.workspace,
            secret=text,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    document: dict[str, object] = {"notifier": output.as_dict(answer.settings)}
    if generated:
        document["generated_secret"] = text

    def render() -> None:
        signed = answer.settings.helpdesk_webhook_signed
        output.line(f"hand-offs to the helpdesk webhook are {'signed' if signed else 'unsigned'}")
        if generated:
            output.line(f"secret (shown once; give it to the helpdesk): {text}")

    output.show(session.options.json_output, document, render)
