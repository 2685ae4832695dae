"""The workspace's visitor-verification secrets in identity (metadata only is ever shown)."""

from __future__ import annotations

import base64
import enum
import os
import sys
from typing import Annotated

import typer

from askvault.identity.v1 import identity_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin
from askvault_cli.failures import CliError, ExitCode

app = typer.Typer(
    help="HMAC (user_hash) and visitor-token secrets: add, list, retire.", no_args_is_help=True
)

SECRET_ENV = "ASKVAULT_SECRET"  # noqa: S105 - a variable name
# Bytes of a generated secret (printed once, base64url, and used as that text's bytes).
GENERATED_BYTES = 32


class Purpose(enum.StrEnum):
    user_hash = "user-hash"
    visitor_token = "visitor-token"  # noqa: S105 - a purpose


_PURPOSES = {
    Purpose.user_hash: identity_pb2.SECRET_PURPOSE_USER_HASH,
    Purpose.visitor_token: identity_pb2.SECRET_PURPOSE_VISITOR_TOKEN,
}


def _row(secret: identity_pb2.SecretMetadata) -> tuple[object, ...]:
    return (
        secret.key_id,
        output.enum_name(identity_pb2.SecretPurpose.Name(secret.purpose), "SECRET_PURPOSE_"),
        secret.active,
        output.when(secret.created_at),
        output.when(secret.retired_at),
    )


_COLUMNS = ("key id", "purpose", "active", "created", "retired")


@app.command("add")
def add(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (visitor tokens name it as kid).")],
    purpose: Annotated[Purpose, typer.Option(help="What the secret verifies.")] = Purpose.user_hash,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the secret from stdin (one line).")
    ] = False,
    generate: Annotated[
        bool, typer.Option(help="Generate a random secret and print it once.")
    ] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Add a secret, from stdin, $ASKVAULT_SECRET, or generated. Several may be active at
    once (rotation): retire the old one when the workspace's backend uses the new one."""
    session = admin(ctx)
    sources = sum((secret_stdin, generate, bool(os.environ.get(SECRET_ENV))))
    if sources != 1:
        raise CliError(
            f"give the secret exactly one way: --secret-stdin, --generate or ${SECRET_ENV}",
            ExitCode.USAGE,
            reason="NO_SECRET",
        )
    if generate:
        text = base64.urlsafe_b64encode(os.urandom(GENERATED_BYTES)).decode().rstrip("=")
    elif secret_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
    else:
        text = os.environ[SECRET_ENV]
    answer = session.call(
        session.identity.AddSecret,
        identity_pb2.AddSecretRequest(
            workspace_id=session.workspace,
            key_id=key_id,
            secret=text.encode(),
            purpose=_PURPOSES[purpose],
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    document: dict[str, object] = {"secret": output.as_dict(answer.secret)}
    if generate:
        document["generated_secret"] = text

    def render() -> None:
        output.table("Secret added", _COLUMNS, [_row(answer.secret)])
        if generate:
            output.line(f"secret (shown once; give it to the workspace's backend): {text}")

    output.show(session.options.json_output, document, render)


@app.command("list")
def list_secrets(ctx: typer.Context) -> None:
    """The workspace's secrets (metadata only)."""
    session = admin(ctx)
    answer = session.call(
        session.identity.ListSecrets,
        identity_pb2.ListSecretsRequest(workspace_id=session.workspace),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.table(
            f"Secrets of {session.workspace}", _COLUMNS, (_row(s) for s in answer.secrets)
        ),
    )


@app.command("retire")
def retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key to retire.")],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Retire a secret: what it signed stops verifying."""
    session = admin(ctx)
    answer = session.call(
        session.identity.RetireSecret,
        identity_pb2.RetireSecretRequest(
            workspace_id=session.workspace,
            key_id=key_id,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.table("Secret retired", _COLUMNS, [_row(answer.secret)]),
    )
