"""``python -m edge`` as a real process: on SIGTERM /readyz answers 503 at once, requests in
flight finish with their answers, and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from google.protobuf import duration_pb2

from askvault.billing.v1 import billing_pb2
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack, user_hash

ROOT = Path(__file__).resolve().parents[2]


# Stripe requests the emulator has left to slow down; the count of those it has slowed
# tells the test that the chat turns are in flight.
_SLOWED = 10_000
TURNS = 5


async def _stripe_requests_slowed(stack: Stack) -> int:
    async with stack.http.get(f"{stack.stripe_url}/_emulator/faults") as response:
        faults = await response.json()
    listed = faults["faults"] if isinstance(faults, dict) else faults
    return sum(_SLOWED - int(fault["times"]) for fault in listed if fault.get("times"))


async def _until_draining(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    """Polls /readyz until it answers 503 (the process handles SIGTERM at its own pace);
    fails if the edge stops listening first."""
    deadline = time.monotonic() + 20
    while True:
        async with session.get(f"{url}/readyz") as response:
            if response.status == 503:
                ready: dict[str, object] = await response.json()
                return ready
            assert response.status == 200, await response.text()
        assert time.monotonic() < deadline, "/readyz never answered 503"
        await asyncio.sleep(0.02)


async def test_sigterm_drains_and_exits_zero(stack: Stack, database_url: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        # Port 0: the process binds a free port itself and prints it (a port picked here and
        # released would be free for anyone until the process binds it).
        "HTTP_PORT": "0",
        "IDENTITY_TARGET": stack.targets["identity"],
        "POLICY_TARGET": stack.targets["policy"],
        "BILLING_TARGET": stack.targets["billing_gateway"],
        "NOTIFIER_TARGET": stack.targets["notifier"],
        # Long enough for the test to see /readyz answer 503 before the edge stops listening.
        "SHUTDOWN_DELAY_SECONDS": "3",
        "SHUTDOWN_GRACE_SECONDS": "15",
        "VISITOR_TURNS_PER_MINUTE": "1000",
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"edge listening on" in line, line
        url = line.decode().split("edge listening on", 1)[1].strip()
        async with stack.http.get(f"{url}/readyz") as response:
            assert response.status == 200, await response.text()
        # Nothing the gateway's mirror holds counts as fresh for more than a second, so each
        # status turn reads Stripe (a warm mirror would answer it without Stripe).
        await stack.billing.UpdateMirrorSettings(
            billing_pb2.UpdateMirrorSettingsRequest(
                workspace_id=WORKSPACE,
                max_age=duration_pb2.Duration(seconds=1),
                idempotency_key="sigterm-mirror-bound",
            ),
            metadata=testing.admin_metadata("admin-e2e"),
        )
        await asyncio.sleep(1.5)
        # Every Stripe call now takes 0.5 s, so chat turns are in flight when SIGTERM comes.
        await stack.fault({"route": "*", "latency_ms": 500, "times": _SLOWED})
        body = {
            "workspace_id": WORKSPACE,
            "conversation_id": "sigterm",
            "visitor": {
                "user_id": "alice",
                "email": "alice@example.com",
                "user_hash": user_hash("alice"),
            },
            "text": "What's my subscription status?",
        }
        results: list[tuple[float, int | str]] = []

        async def one_turn(session: aiohttp.ClientSession) -> None:
            started = time.monotonic()
            try:
                async with session.post(f"{url}/v1/chat/turns", json=body) as response:
                    await response.read()
                    results.append((started, response.status))
            except aiohttp.ClientError as failure:
                results.append((started, type(failure).__name__))

        async with aiohttp.ClientSession() as session:
            steady = [asyncio.create_task(one_turn(session)) for _ in range(TURNS)]
            # SIGTERM once every turn is at the edge and waiting on Stripe, not after a sleep.
            deadline = time.monotonic() + 20
            while await _stripe_requests_slowed(stack) < TURNS:
                assert time.monotonic() < deadline, "the chat turns never reached Stripe"
                await asyncio.sleep(0.02)
            sent_sigterm = time.monotonic()
            process.send_signal(signal.SIGTERM)
            ready = await _until_draining(session, url)
            await asyncio.gather(*steady)
        assert ready["draining"] is True, ready
        in_flight = [status for started, status in results if started < sent_sigterm]
        assert in_flight == [200] * TURNS, results
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
