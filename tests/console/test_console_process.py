"""``python -m console`` as Kubernetes runs it: it serves, /readyz turns 503 on SIGTERM
while the drain's delay runs (so the load balancer stops sending), then it exits 0; and
``migrate`` has nothing to do (no database)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest
from cryptography.fernet import Fernet

from runtime import testing
from tests.deploy import processes

pytestmark = pytest.mark.slow


def _environment() -> dict[str, str]:
    return {
        **os.environ,
        **testing.admin_environment(),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "WORKSPACE_ID": "ws_process",
        "OIDC_DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
        "SESSION_KEYS": Fernet.generate_key().decode(),
        "SHUTDOWN_DELAY_SECONDS": "3",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }


async def _ready(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(f"{url}/readyz") as answer:
        return answer.status, await answer.json()


async def test_sigterm_turns_the_console_unready_then_it_exits() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        env=_environment(),
        cwd=processes.ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{await processes.listening_port(process)}"
        async with aiohttp.ClientSession() as http:
            assert await _ready(http, url) == (200, {"ready": True, "draining": False})
            async with http.get(f"{url}/escalations", allow_redirects=False) as page:
                assert page.status == 303 and page.headers["location"] == "/signin"
            process.send_signal(signal.SIGTERM)
            seen: tuple[int, dict[str, object]] = (0, {})
            for _ in range(50):
                seen = await _ready(http, url)
                if seen[0] == 503:
                    break
                await asyncio.sleep(0.05)
            assert seen == (503, {"ready": False, "draining": True})
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_migrate_has_nothing_to_do() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        "migrate",
        env=_environment(),
        cwd=processes.ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert b"nothing to migrate" in output
