"""The admin credential: ``login`` stores one (0600), ``whoami`` reads it, ``logout``
removes it. ``login --local NAME`` signs one with the local stack's identity provider
(.data/admin-idp, as ``python -m devstack.token --admin NAME`` does); with a real identity
provider, get an access token from it and pass it on stdin (``login --token-stdin``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import jwt
import typer

from askvault_cli import output, settings
from askvault_cli.failures import CliError, ExitCode
from runtime.local_identity_provider import LocalIdentityProvider

# The local stack's provider: where it keeps its key and whom its credentials name as
# issuer (devstack.config.ADMIN_PROVIDER_DIR and ADMIN_ISSUER; a test keeps them equal).
LOCAL_ISSUER = "https://devstack.askvault.local/"
LOCAL_IDP_ENV = "ASKVAULT_LOCAL_IDP_DIR"
# The repository root (the CLI is installed editable from <root>/cli).
_ROOT = Path(__file__).resolve().parents[3]


def local_idp_dir() -> Path:
    return Path(os.environ.get(LOCAL_IDP_ENV) or _ROOT / ".data" / "admin-idp")


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)


def login(
    ctx: typer.Context,
    local: Annotated[
        str | None,
        typer.Option(
            "--local",
            metavar="NAME",
            help="Sign a credential for admin NAME with the local stack's identity provider.",
        ),
    ] = None,
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin", help="Store the credential read from stdin instead."),
    ] = False,
    workspaces: Annotated[
        list[str] | None,
        typer.Option("--for-workspace", help="(--local) Workspaces it covers; default all."),
    ] = None,
    ttl: Annotated[
        int, typer.Option(min=60, max=43200, help="(--local) Lifetime, seconds.")
    ] = 3600,
    idp_dir: Annotated[
        Path | None,
        typer.Option(
            help=f"(--local) The provider's directory [env {LOCAL_IDP_ENV}].", hidden=True
        ),
    ] = None,
    issuer: Annotated[str, typer.Option(help="(--local) Its issuer.", hidden=True)] = LOCAL_ISSUER,
) -> None:
    """Store an admin credential for the next commands (mode 0600)."""
    if (local is None) == (not token_stdin):
        raise CliError(
            "choose one: --local NAME (the local stack) or --token-stdin (your provider's token)",
            ExitCode.USAGE,
            reason="INVALID_OPTION",
        )
    if local is not None:
        directory = idp_dir or local_idp_dir()
        if not (directory / "signing-key.pem").exists():
            raise CliError(
                f"no local identity provider in {directory}: start the local stack once "
                "(`make run`), which makes it",
                ExitCode.NO_CREDENTIALS,
                reason="NO_LOCAL_PROVIDER",
            )
        provider = LocalIdentityProvider.load_or_create(directory, issuer)
        token = provider.issue(local, workspaces or ["*"], ttl_seconds=ttl)
    else:
        token = sys.stdin.readline().strip()
        if not token:
            raise CliError(
                "no credential on stdin", ExitCode.NO_CREDENTIALS, reason="NO_CREDENTIALS"
            )
    path = settings.store_token(token)
    claims = _claims(token)
    output.note(f"stored the credential of {claims.get('sub', '?')} in {path}")


def logout(ctx: typer.Context) -> None:
    """Remove the stored credential."""
    path = settings.stored_token_file()
    path.unlink(missing_ok=True)
    output.note(f"removed {path}")


def _claims(token: str) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def whoami(ctx: typer.Context) -> None:
    """Whose credential the commands use (its claims as read here; the services verify it)."""
    root = ctx.find_root().obj
    token = root.options.credential()
    claims = _claims(token)
    if not claims:
        raise CliError(
            "the admin credential is not a JWT", ExitCode.UNAUTHENTICATED, reason="INVALID"
        )
    expires = claims.get("exp")
    workspaces = claims.get("askvault_workspaces")
    document: dict[str, object] = {
        "subject": claims.get("sub", ""),
        "issuer": claims.get("iss", ""),
        "workspaces": workspaces if isinstance(workspaces, list) else [],
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(expires)))
        if isinstance(expires, int | float)
        else "",
    }
    output.show(
        root.options.json_output,
        document,
        lambda: output.pairs(
            "Admin credential",
            [
                (name, ", ".join(map(str, value)) if isinstance(value, list) else value)
                for name, value in document.items()
            ],
        ),
    )
