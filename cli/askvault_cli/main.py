"""``askvault``: the admin command line. ``askvault --help`` lists the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from askvault_cli import calls, output, settings
from askvault_cli.commands import audit, billing, bounds, escalations, messages, secrets, workspace
from askvault_cli.commands import login as login_commands
from askvault_cli.failures import CliError


class _Group(TyperGroup):
    """The root group: a CliError anywhere below becomes one line on stderr and its exit
    code (the same in-process, under CliRunner, as from the installed command)."""

    # The context is the click one typer vendors (typer._click), a private module.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as failure:
            json_output = bool(ctx.params.get("json_output"))
            output.error(failure, json_output)
            raise typer.Exit(int(failure.exit_code)) from None


app = typer.Typer(
    cls=_Group,
    name="askvault",
    help=(
        "Admin command line of the AskVault billing skill: Stripe connection, bounds, "
        "escalations, audit log, recovery, messages, secrets and workspace settings. It calls "
        "the services' admin RPCs with your admin credential."
    ),
    epilog=(
        "Services: ASKVAULT_IDENTITY_ADDR, ASKVAULT_POLICY_ADDR, ASKVAULT_BILLING_GATEWAY_ADDR, "
        "ASKVAULT_NOTIFIER_ADDR (host:port; default the local stack's 127.0.0.1:50061-50064). "
        "Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 no credential, 4 credential expired "
        "or invalid, 5 not an admin of the workspace, 6 service unreachable, 7 invalid argument, "
        "8 not found, 9 conflicts with the current state."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", "-w", help=f"Workspace id [env {settings.WORKSPACE_ENV}]."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help=f"Admin credential (bearer JWT) [env {settings.TOKEN_ENV}]."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help=f"File holding the admin credential [env {settings.TOKEN_FILE_ENV}]; "
            "default: the one `askvault login` stored."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine output: one JSON document on stdout.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(envvar=settings.TIMEOUT_ENV, min=0.1, help="Seconds each call may take."),
    ] = settings.DEFAULT_TIMEOUT_SECONDS,
    ca_file: Annotated[
        str | None,
        typer.Option(
            envvar=settings.TLS_CA_ENV,
            help="CA bundle: call the services over TLS (default: plaintext, the local stack).",
        ),
    ] = None,
) -> None:
    """The global options; the session is made here and closed after the command."""
    options = settings.Options(
        token=token,
        token_file=token_file,
        workspace=workspace,
        json_output=json_output,
        timeout=timeout,
        ca_file=ca_file,
    )
    admin = calls.Admin(options)
    ctx.obj = admin
    ctx.call_on_close(admin.close)


login_commands.register(app)
billing.register(app)
app.add_typer(bounds.app, name="bounds")
app.add_typer(bounds.confirmation_app, name="confirmation")
app.add_typer(escalations.app, name="escalations")
app.add_typer(audit.app, name="audit")
app.add_typer(billing.recovery_app, name="recovery")
app.add_typer(messages.app, name="messages")
app.add_typer(secrets.app, name="secrets")
app.add_typer(workspace.app, name="workspace")


def run() -> None:
    """The console script's entry point."""
    app()
