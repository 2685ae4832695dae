"""The system as ``make run`` starts it (devstack's plan and process helpers), on free ports, on the
harness's own PostgreSQL, with shorter intervals so that a few minutes show every recovery."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import stripe

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from chaos.postgres import ChaosPostgres
from devstack import config, planning, processes, provision

# Services kill -9 applies to, in the order the scenario kills them.
SERVICES = ("identity", "policy", "billing_gateway", "notifier", "edge")

# The edge's deadlines in the stack (its defaults, written out because the harness's hang
# limits are derived from them).
RPC_DEADLINE_SECONDS = 2.0
BILLING_DEADLINE_SECONDS = 1.2
WEBHOOK_DEADLINE_SECONDS = 5.0
# Grants expire this long after they are reserved (the policy default is 120 s).
GRANT_TTL_SECONDS = 20
# The workspace's cancellation grace in the stack (the default is 30 s): short enough that
# an "undo" said about this long after the cancellation races the scheduler that runs it.
CANCELLATION_GRACE_SECONDS = 3


def overrides() -> dict[str, dict[str, str]]:
    """Per process: shorter intervals (expiry, reconciliation, leases, backoff) so recovery
    completes within the run, no rate limits in the way of the load, no metrics ports."""
    common = {
        "METRICS_PORT": "0",
        "GRPC_HOST": "127.0.0.1",
        "HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "3",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    return {
        # The console too: its default metrics port is fixed, and another stack on the same
        # machine (a second run, ``make run``) holds it.
        "console": {"METRICS_PORT": "0"},
        "identity": dict(common),
        "policy": {
            **common,
            "GRANT_TTL_SECONDS": str(GRANT_TTL_SECONDS),
            "EXPIRY_INTERVAL_SECONDS": "0.5",
        },
        "notifier": {
            **common,
            "SMTP_TIMEOUT_SECONDS": "2",
            "WHATSAPP_TIMEOUT_SECONDS": "2",
            "HTTP_TIMEOUT_SECONDS": "2",
            "POLL_INTERVAL_SECONDS": "0.2",
            "RETRY_BACKOFF_BASE_SECONDS": "0.2",
            "RETRY_BACKOFF_CAP_SECONDS": "2",
            # A worker killed mid-send leaves its claim; the message is due again after this
            # (more than 4/3 of the longest provider timeout above).
            "LEASE_SECONDS": "5",
            "DEFAULT_CONTACT_HOURLY_LIMIT": "100000",
            "DEFAULT_WORKSPACE_HOURLY_LIMIT": "100000",
        },
        "billing_gateway": {
            **common,
            "STRIPE_TIMEOUT_SECONDS": "1.0",
            "STRIPE_MAX_NETWORK_RETRIES": "1",
            "BREAKER_COOLDOWN_SECONDS": "3",
            "WEBHOOK_POLL_SECONDS": "0.2",
            "SCHEDULER_POLL_SECONDS": "0.5",
            "RECONCILE_INTERVAL_SECONDS": "1",
            # Longer than the 3 s latency fault: Stripe goes on with a write the gateway
            # gave up waiting for, and a write reconciled earlier is found not done and
            # failed while Stripe applies it a moment later (the ledger then says failed for
            # a plan change Stripe made: the chaos run found it with 3 s here; the gateway's
            # check of this setting counts only its own timeouts, not Stripe's processing).
            "RECONCILE_AFTER_SECONDS": "8",
        },
        "edge": {
            **common,
            "RPC_DEADLINE_SECONDS": str(RPC_DEADLINE_SECONDS),
            "BILLING_DEADLINE_SECONDS": str(BILLING_DEADLINE_SECONDS),
            "WEBHOOK_DEADLINE_SECONDS": str(WEBHOOK_DEADLINE_SECONDS),
            "VISITOR_TURNS_PER_MINUTE": "100000",
            "ADDRESS_REQUESTS_PER_MINUTE": "1000000",
            "CUSTOMER_TURNS_PER_MINUTE": "1000000",
        },
    }


@dataclass
class ChaosStack:
    """The running processes, their ports and the harness's PostgreSQL."""

    demo: config.DemoConfig
    ports: dict[str, int]
    children: dict[str, processes.Child]
    postgres: ChaosPostgres
    database_url: str
    logs: Path
    keys: dict[str, str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def workspace_id(self) -> str:
        return self.demo.workspace_id

    async def kill9(self, name: str) -> None:
        """SIGKILL: no drain, no cleanup, whatever was in flight is cut."""
        process = self.children[name].process
        assert process is not None
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    async def start(self, name: str) -> float:
        """Starts the process again; seconds until it is ready."""
        began = time.monotonic()
        child = self.children[name]
        await processes.start(child, self.logs)
        await processes.wait_ready(child)
        return time.monotonic() - began

    async def crash_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.crash)

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.start_again)

    def database_processes(self) -> list[processes.Child]:
        """The processes that use the database (every service), in their start order."""
        return [child for child in self.children.values() if "DATABASE_URL" in child.env]

    async def stop_services(self) -> None:
        """SIGTERM to every service (the emulators and the SMTP sink keep running)."""
        await processes.stop(self.database_processes(), grace=5.0)

    async def start_services_on(self, database_url: str) -> float:
        """Starts every service on another database (migrating it first, as a deployment's
        start does); seconds until all are ready."""
        began = time.monotonic()
        self.database_url = database_url
        children = self.database_processes()
        for child in children:
            child.env["DATABASE_URL"] = database_url
            child.env["MIGRATION_DATABASE_URL"] = database_url
            await processes.start(child, self.logs)
        # All at once: each waits for its peers only when called, not to start.
        await asyncio.gather(*(processes.wait_ready(child) for child in children))
        return time.monotonic() - began

    def exited(self) -> list[str]:
        """Processes that exited on their own (none should)."""
        return [
            name
            for name, child in self.children.items()
            if child.process is not None and child.process.returncode is not None
        ]

    async def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST to the Stripe emulator's admin API; its JSON answer."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url('stripe_emulator')}{path}", json=body or {}) as response,
        ):
            response.raise_for_status()
            return await response.json()


@asynccontextmanager
async def running(
    logs: Path,
    process_overrides: dict[str, dict[str, str]] | None = None,
    service_roles: bool = False,
) -> AsyncIterator[ChaosStack]:
    """Starts PostgreSQL, the emulators and every service (devstack's plan), provisions the
    demo workspace; stops everything on exit. ``process_overrides`` replaces the harness's
    shortened intervals (the benchmarks run with the services' defaults); ``service_roles``
    runs each service as its own login role, as ``make run`` does (the soak counts database
    connections per role)."""
    os.environ.pop("STRIPE_TEST_API_KEY", None)  # the emulator, never real Stripe
    demo = config.load()
    names = list(demo.raw["ports"])
    ports = dict(zip(names, processes.free_ports(len(names)), strict=True))
    postgres = ChaosPostgres()
    database_url = await asyncio.to_thread(postgres.start)
    children = planning.plan(
        demo,
        database_url,
        ports=ports,
        overrides=overrides() if process_overrides is None else process_overrides,
        service_database_urls=(
            await planning.service_database_urls(database_url) if service_roles else None
        ),
    )
    stack = ChaosStack(
        demo,
        ports,
        {child.name: child for child in children},
        postgres,
        database_url,
        logs,
        config.local_keys(),
    )
    try:
        for child in children:
            await processes.start(child, logs)
            await processes.wait_ready(child)
        await provision.provision(
            demo, children_names=set(stack.children), port=lambda name: ports[name]
        )
        await shorten_cancellation_grace(stack, CANCELLATION_GRACE_SECONDS)
        yield stack
    finally:
        await processes.stop(children, grace=5.0)
        await asyncio.to_thread(postgres.close)


async def shorten_cancellation_grace(stack: ChaosStack, seconds: int) -> None:
    """Puts the workspace's cancellation grace at ``seconds`` through its bounds. A shorter
    grace loosens the bounds: one admin proposes, a second one approves (the four-eyes
    rule of bounds changes)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports['policy']}") as channel:
        policy = policy_pb2_grpc.PolicyServiceStub(channel)
        current = await policy.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id=stack.workspace_id),
            metadata=provision.service_metadata("edge"),
            timeout=5,
        )
        bounds = policy_pb2.Bounds()
        bounds.CopyFrom(current.bounds)
        bounds.workspace_id = stack.workspace_id
        bounds.cancellation_grace.FromSeconds(seconds)
        proposed = await policy.ProposeBoundsChange(
            policy_pb2.ProposeBoundsChangeRequest(
                workspace_id=stack.workspace_id,
                bounds=bounds,
                idempotency_key=f"chaos-grace-{seconds}",
            ),
            metadata=provision.admin_metadata("chaos-admin-1"),
            timeout=5,
        )
        if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
            await policy.ApproveBoundsChange(
                policy_pb2.ApproveBoundsChangeRequest(
                    workspace_id=stack.workspace_id,
                    change_id=proposed.change.change_id,
                    idempotency_key=f"chaos-grace-{seconds}-approved",
                ),
                metadata=provision.admin_metadata("chaos-admin-2"),
                timeout=5,
            )
        after = await policy.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id=stack.workspace_id),
            metadata=provision.service_metadata("edge"),
            timeout=5,
        )
    if after.bounds.cancellation_grace.ToSeconds() != seconds:
        raise RuntimeError(
            f"the cancellation grace is {after.bounds.cancellation_grace.ToSeconds()} s, "
            f"not {seconds} s, after the bounds change"
        )


@dataclass(frozen=True)
class SeededStripe:
    """The stack's Stripe emulator, seeded with the demo's story, and an SDK client of it."""

    api_key: str
    summary: dict[str, Any]
    client: stripe.StripeClient


@asynccontextmanager
async def seeded_stripe(chaos: ChaosStack) -> AsyncIterator[SeededStripe]:
    """Seeds the emulator's demo account (the seed's summary: customers, products, prices)
    and yields a Stripe SDK client of it, closed on exit."""
    api_key = str(chaos.demo.raw["stripe"]["secret_key"])
    summary = await chaos.admin("/_emulator/seed", {"api_key": api_key})
    stripe_http = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": chaos.url("stripe_emulator")},
        http_client=stripe_http,
        max_network_retries=2,
    )
    try:
        yield SeededStripe(api_key, summary, client)
    finally:
        await stripe_http.close_async()  # type: ignore[no-untyped-call]
