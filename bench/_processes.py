"""The system as real processes for the whole-system scenarios: devstack's plan (emulators,
then every ``python -m <service>``) on free ports, on a fresh database of the bench's
PostgreSQL, the demo workspace provisioned; stopped (SIGTERM, then SIGKILL) on exit.

devstack's plan and process helpers start, wait for and stop the processes, with each
process's log in a temporary directory."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import _harness
from devstack import config, planning, processes, provision
from devstack.usage import cpu_seconds, memory_mb
from runtime.secretbox import SecretBox

SERVICES = ("identity", "policy", "billing_gateway", "notifier", "edge")
_READY_SECONDS = 60.0
# Seconds a process has to end after SIGTERM before it is killed.
_STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Usage:
    """What the system spent on some operations: CPU per service process, and the database's
    committed transactions and rows written (pg_stat_database of the bench's database)."""

    cpu_seconds: dict[str, float]
    transactions: int
    rows_written: int

    def per_operation(self, operations: int) -> dict[str, Any]:
        """The same, per operation: CPU milliseconds per process, transactions and rows."""
        count = max(1, operations)
        return {
            "operations": operations,
            "cpu_ms": {
                name: round(1000 * seconds / count, 2) for name, seconds in self.cpu_seconds.items()
            },
            "cpu_ms_all_services": round(1000 * sum(self.cpu_seconds.values()) / count, 2),
            "db_transactions": round(self.transactions / count, 2),
            "db_rows_written": round(self.rows_written / count, 2),
        }


@dataclass
class System:
    """The running processes and what a scenario needs to talk to them."""

    demo: config.DemoConfig
    ports: dict[str, int]
    children: dict[str, processes.Child]
    database_url: str
    logs: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def grpc_target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    @property
    def workspace_id(self) -> str:
        return self.demo.workspace_id

    def memory(self, names: tuple[str, ...] = SERVICES) -> dict[str, dict[str, float]]:
        """Per service process: its RSS now and its peak RSS."""
        return {
            name: memory_mb(child.process.pid)
            for name, child in self.children.items()
            if name in names and child.process is not None
        }

    def cpu(self) -> dict[str, float]:
        """CPU seconds each service process has used so far."""
        return {
            name: cpu_seconds(child.process.pid)
            for name, child in self.children.items()
            if name in SERVICES and child.process is not None
        }

    async def database_work(self) -> tuple[int, int]:
        """Committed transactions and rows inserted, updated or deleted in the bench's
        database so far (PostgreSQL's statistics; they lag by up to half a second)."""
        connection = await asyncpg.connect(self.database_url)
        try:
            await connection.execute("SELECT pg_stat_clear_snapshot()")
            row = await connection.fetchrow(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS written"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            await connection.close()
        assert row is not None
        return int(row["xact_commit"]), int(row["written"])

    @asynccontextmanager
    async def usage(self) -> AsyncIterator[list[Usage]]:
        """Measures what the block spends; the yielded list holds the Usage afterwards."""
        found: list[Usage] = []
        cpu_before = self.cpu()
        transactions_before, written_before = await self.database_work()
        yield found
        cpu_after = self.cpu()
        # PostgreSQL reports a backend's counts when it goes idle, at most every 500 ms.
        await asyncio.sleep(1.0)
        transactions_after, written_after = await self.database_work()
        found.append(
            Usage(
                {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
                # The two statistics reads themselves are transactions too.
                transactions_after - transactions_before - 1,
                written_after - written_before,
            )
        )

    def exited(self) -> list[str]:
        return [
            name
            for name, child in self.children.items()
            if child.process is not None and child.process.returncode is not None
        ]

    async def signing_secret(self) -> str:
        """The webhook endpoint's signing secret, as the billing gateway stored it."""
        connection = await asyncpg.connect(self.database_url)
        try:
            row = await connection.fetchrow(
                "SELECT secret_id, ciphertext FROM billing_gateway.webhook_secrets"
                " WHERE workspace_id = $1 AND (retired_at IS NULL OR retired_at > now())"
                " ORDER BY created_at DESC LIMIT 1",
                self.workspace_id,
            )
        finally:
            await connection.close()
        if row is None:
            raise RuntimeError("the billing gateway has no webhook signing secret")
        box = SecretBox(config.local_keys()["SECRETS_ENCRYPTION_KEYS"])
        bound_to = f"{self.workspace_id}/webhook/{row['secret_id']}"
        return box.open(bytes(row["ciphertext"]), bound_to).decode()


async def _start(child: processes.Child, logs: Path) -> None:
    await processes.start(child, logs)
    try:
        await processes.wait_ready(child, _READY_SECONDS)
    except RuntimeError as error:
        raise RuntimeError(f"{error}: {processes.tail(child, 40)}") from error


@asynccontextmanager
async def running(overrides: Mapping[str, Mapping[str, str]]) -> AsyncIterator[System]:
    """Every process of ``make run`` on free ports with ``overrides`` added to their
    environment, on a fresh database; the demo workspace provisioned."""
    demo = config.load()
    names = list(demo.raw["ports"])
    ports = dict(zip(names, processes.free_ports(len(names)), strict=True))
    with tempfile.TemporaryDirectory(prefix="askvault-bench-") as logs:
        async with _harness.fresh_database() as database_url:
            children = planning.plan(demo, database_url, ports=ports, overrides=overrides)
            system = System(demo, ports, {c.name: c for c in children}, database_url, Path(logs))
            try:
                for child in children:
                    await _start(child, Path(logs))
                await provision.provision(
                    demo, children_names=set(system.children), port=lambda name: ports[name]
                )
                yield system
            finally:
                await processes.stop(children, _STOP_GRACE_SECONDS)


def common_overrides() -> dict[str, str]:
    """What every service process gets: no metrics port, quiet logs, loopback only."""
    return {"METRICS_PORT": "0", "GRPC_HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}


# The edge's per-visitor, per-address and per-customer limits, lifted: a benchmark's load
# comes from few visitors and one address, which the limits would refuse.
EDGE_LIMITS_LIFTED = (
    "edge VISITOR_TURNS_PER_MINUTE, ADDRESS_REQUESTS_PER_MINUTE, CUSTOMER_TURNS_PER_MINUTE lifted"
)


def edge_limits_lifted() -> dict[str, dict[str, str]]:
    """Every process with ``common_overrides``, the edge with its rate limits lifted."""
    common = common_overrides()
    return {
        **{name: dict(common) for name in SERVICES},
        "edge": {
            **common,
            "VISITOR_TURNS_PER_MINUTE": "1000000",
            "ADDRESS_REQUESTS_PER_MINUTE": "1000000",
            "CUSTOMER_TURNS_PER_MINUTE": "1000000",
        },
    }


def admin_metadata(subject: str) -> tuple[tuple[str, str], ...]:
    return provision.admin_metadata(subject)


def service_metadata(service: str) -> tuple[tuple[str, str], ...]:
    return provision.service_metadata(service)
