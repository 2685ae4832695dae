"""The command groups; each maps options to one admin RPC and its answer to a table."""

from __future__ import annotations

from typing import Annotated

import typer

from askvault_cli import calls

# Every mutating command takes one; a script that retries passes the same key, so the
# service returns the first result and changes nothing more.
IdempotencyKey = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Idempotency key (default: a fresh one); the same key never acts twice.",
    ),
]


def admin(ctx: typer.Context) -> calls.Admin:
    """The admin session the root command made."""
    found = ctx.find_root().obj
    assert isinstance(found, calls.Admin)
    return found
