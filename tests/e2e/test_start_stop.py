"""The whole in-process system started and stopped many times, some stops with chat turns and
RPCs still in flight: every stop ends, and nothing is left behind (no task, no listening port,
no growing pile of open files). A stop that hangs fails here with the watchdog's dump."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import database
from tests.e2e.conftest import WORKSPACE, Stack, running_stack, user_hash

CYCLES = int(os.environ.get("ASKVAULT_START_STOP_CYCLES", "50"))
# Seconds between each service's database probes: frequent, so that stops land at every
# moment of a probe (a stop that met a probe just finishing once hung forever).
PROBE_INTERVAL_SECONDS = 0.01
# Every third stop starts while chat turns and RPCs are in flight.
IN_FLIGHT_EVERY = 3
# Seconds one cycle's stop may take at most: each of its steps has a bound of seconds, and a
# stop with nothing stuck takes well under a second.
STOP_LIMIT_SECONDS = 60.0
# Open files a run of cycles may add in all once warm (the loop's own, the logs'), far fewer
# than one cycle opens (dozens of sockets).
FD_GROWTH_LIMIT = 20


def _listening(port: int) -> bool:
    """Whether something accepts connections on the port (a bind test would also fail on a
    port our own process reuses meanwhile for an outgoing connection)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _ports(stack: Stack) -> dict[str, int]:
    ports = {name: int(target.rsplit(":", 1)[1]) for name, target in stack.targets.items()}
    ports["edge"] = int(stack.edge_url.rsplit(":", 1)[1])
    ports["stripe emulator"] = int(stack.stripe_url.rsplit(":", 1)[1])
    ports["whatsapp emulator"] = int(stack.whatsapp.url.rsplit(":", 1)[1])
    ports["smtp sink"] = stack.sink.smtp_port
    ports["smtp sink http"] = stack.sink.http_port
    return ports


def _open_files() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd")) if Path("/proc/self/fd").exists() else 0


async def _chat_turn(http: aiohttp.ClientSession, edge_url: str, text: str) -> Any:
    async with http.post(
        f"{edge_url}/v1/chat/turns",
        json={
            "workspace_id": WORKSPACE,
            "conversation_id": f"start-stop-{time.monotonic_ns()}",
            "visitor": {
                "user_id": "alice",
                "email": "alice@example.com",
                "user_hash": user_hash("alice"),
            },
            "text": text,
        },
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        return response.status


async def _in_flight(stack: Stack, http: aiohttp.ClientSession) -> list[asyncio.Task[Any]]:
    """Chat turns (each crossing identity, policy and the billing gateway into Stripe) and
    direct RPCs, started and left running."""
    channel = grpc.aio.insecure_channel(stack.targets["policy"])
    policy = policy_pb2_grpc.PolicyServiceStub(channel)

    async def rpcs() -> None:
        try:
            for _ in range(20):
                await policy.GetBounds(
                    policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=10
                )
        finally:
            await channel.close()

    texts = ("what's my plan?", "show my invoices", "I want a refund", "cancel my subscription")
    calls = [asyncio.create_task(_chat_turn(http, stack.edge_url, text)) for text in texts]
    calls.append(asyncio.create_task(rpcs()))
    # Let them reach the services before the stop begins.
    await asyncio.sleep(0.05)
    return calls


async def test_the_whole_system_starts_and_stops_many_times_leaving_nothing_behind(
    postgres_server: str, template_database: str
) -> None:
    before = asyncio.all_tasks()
    files_when_warm = 0
    cut_by_a_stop = 0
    admin = await asyncpg.connect(postgres_server)
    async with aiohttp.ClientSession() as http:
        for cycle in range(CYCLES):
            # A database of its own each time: the workspace is provisioned anew (its webhook
            # URL names the edge's new port).
            name = f"askvault_cycle_{os.getpid()}_{cycle}"
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
            calls: list[asyncio.Task[Any]] = []
            exit_stack = contextlib.AsyncExitStack()
            stack = await exit_stack.enter_async_context(
                running_stack(
                    database.with_database_name(postgres_server, name),
                    health_probe_interval_seconds=PROBE_INTERVAL_SECONDS,
                )
            )
            ports = _ports(stack)
            if cycle % IN_FLIGHT_EVERY == 1:
                calls = await _in_flight(stack, http)
            cut_by_a_stop += sum(not call.done() for call in calls)
            started = time.monotonic()
            await exit_stack.aclose()
            stopped_in = time.monotonic() - started
            assert stopped_in < STOP_LIMIT_SECONDS, f"cycle {cycle}: stop took {stopped_in:.1f} s"

            # Calls cut by the stop end with an answer or an error, never by hanging.
            if calls:
                done, pending = await asyncio.wait(calls, timeout=30)
                assert not pending, f"cycle {cycle}: {len(pending)} calls never ended"
                for call in done:
                    call.exception()  # retrieved: a refused or cut call is expected here

            still_listening = await _still_listening(ports)
            assert still_listening == [], f"cycle {cycle}: still listening: {still_listening}"

            left = await _tasks_left_behind(before)
            assert left == [], f"cycle {cycle}: tasks left running: {left}"
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
            if cycle == 4:
                files_when_warm = _open_files()
    await admin.close()
    assert cut_by_a_stop > 0, "no stop began with a call in flight"

    grown = _open_files() - files_when_warm
    assert grown <= FD_GROWTH_LIMIT, f"{grown} more open files after {CYCLES - 5} cycles"


async def _still_listening(ports: dict[str, int]) -> list[str]:
    """Names whose port still accepts connections (a closing listener gets a moment)."""
    deadline = time.monotonic() + 5.0
    while True:
        found = [name for name, port in ports.items() if _listening(port)]
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def _tasks_left_behind(before: set[asyncio.Task[Any]]) -> list[str]:
    """Tasks started since ``before`` and still running (a finishing close gets a moment)."""
    current = asyncio.current_task()
    deadline = time.monotonic() + 10.0
    while True:
        left = [
            task
            for task in asyncio.all_tasks()
            if task not in before and task is not current and not task.done()
        ]
        if not left or time.monotonic() > deadline:
            return sorted(f"{task.get_name()} {task.get_coro()!r}" for task in left)
        await asyncio.sleep(0.05)
