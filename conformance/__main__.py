"""``python -m conformance``: check a deployment against the contracts.

With no ``--edge``/``--grpc`` the local stack (``make run``) is checked with its own
credentials; otherwise the credentials come from CONFORMANCE_* variables (deploy/README.md).
Exits 1 when a check fails; ``--report`` writes every result as JSON."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from rich.console import Console

from conformance import grpc_checks, http_checks, journey
from conformance.report import Report
from conformance.target import SERVICES, Target, TargetError, from_environment, local

HTTP_TIMEOUT_SECONDS = 30.0


async def check(target: Target) -> Report:
    """Every check against ``target``, in order (the journey last: it moves test money)."""
    report = Report(target.edge_url)
    for service in SERVICES:
        for name, grpc_check in (
            ("health", grpc_checks.health),
            ("reflection", grpc_checks.reflection),
            ("refusals without a credential", grpc_checks.refusals_without_credential),
            ("refusals of empty requests", grpc_checks.refusals_of_empty_requests),
        ):
            await report.run(f"{service}: {name}", partial(grpc_check, target, service))
    await report.run("policy: idempotent replay", partial(grpc_checks.idempotent_replay, target))
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for name, http_check in (
            ("edge: probes", http_checks.probes),
            ("edge: OpenAPI document", http_checks.openapi_document),
            ("edge: JSON errors", http_checks.json_errors),
            ("edge: Stripe webhook signature", http_checks.stripe_webhook_signature),
            ("edge: WhatsApp webhook signature", http_checks.whatsapp_webhook_signature),
            ("journey: status", journey.status),
            ("journey: refund once", journey.refund),
        ):
            await report.run(name, partial(http_check, http, target))
    return report


app = typer.Typer(add_completion=False)


@app.command()
def main(
    edge: Annotated[str, typer.Option(help="The edge's base URL; empty: the local stack.")] = "",
    grpc: Annotated[
        str, typer.Option(help="identity=host:port,policy=...,billing_gateway=...,notifier=...")
    ] = "",
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Write the results as JSON.")
    ] = None,
) -> None:
    """Checks a deployment against the contracts."""
    try:
        target = from_environment(edge, grpc) if edge or grpc else local()
    except (TargetError, OSError, ValueError) as problem:
        raise typer.BadParameter(str(problem)) from None
    report = asyncio.run(check(target))
    report.print(Console())
    if report_file is not None:
        report.write(report_file)
    raise typer.Exit(0 if report.passed else 1)


if __name__ == "__main__":
    app()
