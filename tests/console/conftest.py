"""The console in a real headless browser against the whole system in-process: the e2e
stack (Stripe emulator, SMTP sink, the five services, the e2e workspace provisioned), the
local OIDC provider over HTTP signing with the tests' admin key, the console, and the OS's
Chromium driven by Playwright (no browser download).

Chromium missing is a failure that says how to install it, never a skip."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cryptography.fernet import Fernet
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from console import service as console_service
from console.settings import ConsoleSettings
from devstack.oidc_provider import LocalOidcProvider
from runtime import testing
from tests.e2e.conftest import WORKSPACE, Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "console"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# A loaded CI machine (two test workers) can take seconds per page: assertions wait this long.
expect.set_options(timeout=15_000)


def chromium_path() -> str:
    """The OS's Chromium; fails the test (not a skip) when it is not installed."""
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    pytest.fail(
        "Chromium is not installed: the console's browser tests need the OS package "
        "(apt-get install -y chromium; .ci/run installs it)",
        pytrace=False,
    )


@dataclass
class Console:
    """The running console and the browser pages of two admins."""

    url: str
    stack: Stack
    browser: Browser
    provider_url: str

    async def signed_in(self, admin: str, url: str = "") -> Page:
        """A fresh browser context signed in through the OIDC provider as ``admin`` (on
        this console, or on another one at ``url``)."""
        base = url or self.url
        context: BrowserContext = await self.browser.new_context()
        page = await context.new_page()
        await page.goto(f"{base}/escalations")
        # Not signed in: the console sends the browser to the provider's form.
        await page.wait_for_url("**/authorize?**")
        await page.get_by_role("button", name=admin, exact=True).click()
        await page.wait_for_url(f"{base}/escalations")
        return page


async def start_console(
    stack: Stack, provider_url: str, **overrides: Any
) -> console_service.RunningConsole:
    """A console on a free port for the stack's workspace; ``overrides`` change settings."""
    settings = testing.make_settings(
        ConsoleSettings,
        "",
        **{
            "http_host": "127.0.0.1",
            "http_port": 0,
            "workspace_id": WORKSPACE,
            "oidc_discovery_url": f"{provider_url}/.well-known/openid-configuration",
            "session_keys": Fernet.generate_key().decode(),
            "policy_target": stack.targets["policy"],
            "billing_target": stack.targets["billing_gateway"],
            "notifier_target": stack.targets["notifier"],
            "edge_url": stack.edge_url,
            **overrides,
        },
    )
    return await console_service.start(settings)


@contextlib.asynccontextmanager
async def _provider() -> AsyncIterator[str]:
    oidc = LocalOidcProvider(testing.TEST_ADMIN_PROVIDER)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    oidc.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(oidc.app(), log_config=None, access_log=False, lifespan="off")
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield oidc.base_url
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def console(database_url: str) -> AsyncIterator[Console]:
    executable = chromium_path()
    async with running_stack(database_url) as stack, _provider() as provider_url:
        running = await start_console(stack, provider_url)
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=executable)
                try:
                    yield Console(running.url, stack, browser, provider_url)
                finally:
                    await browser.close()
        finally:
            await running.stop(1.0)


async def screenshot(page: Page, name: str) -> None:
    """Keeps the page as docs/console/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
