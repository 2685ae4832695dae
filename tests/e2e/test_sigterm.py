"""``python -m edge`` as a real process: on SIGTERM /readyz answers 503 at once, requests in
flight finish with their answers, and the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.e2e.conftest import WORKSPACE, Stack, user_hash

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_sigterm_drains_and_exits_zero(stack: Stack, database_url: str) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "IDENTITY_TARGET": stack.targets["identity"],
        "POLICY_TARGET": stack.targets["policy"],
        "BILLING_TARGET": stack.targets["billing_gateway"],
        "NOTIFIER_TARGET": stack.targets["notifier"],
        "SHUTDOWN_DELAY_SECONDS": "1",
        "SHUTDOWN_GRACE_SECONDS": "5",
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
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"edge listening on" in line, line
        async with stack.http.get(f"{url}/readyz") as response:
            assert response.status == 200, await response.text()
        # Every Stripe call now takes 0.5 s, so chat turns are in flight when SIGTERM comes.
        await stack.fault({"route": "*", "latency_ms": 500})
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
            steady: list[asyncio.Task[None]] = []
            for _ in range(5):
                steady.append(asyncio.create_task(one_turn(session)))
                await asyncio.sleep(0.1)
            sent_sigterm = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.1)
            async with session.get(f"{url}/readyz") as response:
                ready_status = response.status
                ready = await response.json()
            await asyncio.gather(*steady)
        assert ready_status == 503 and ready["draining"] is True, ready
        in_flight = [status for started, status in results if started < sent_sigterm]
        assert in_flight == [200] * 5, results
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
