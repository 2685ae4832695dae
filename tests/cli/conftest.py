"""The admin CLI against the whole system in-process: real gRPC servers, the Stripe
emulator, real PostgreSQL, and admin credentials from a local identity provider kept in a
directory as the local stack keeps .data/admin-idp (the servers read its JWKS file).

One system serves the module's tests (starting it takes seconds on a loaded machine); each
test uses its own objects (its own bounds change, escalation or workspace)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from askvault_cli.main import app
from runtime import database, testing
from runtime.local_identity_provider import LocalIdentityProvider
from stripe_emulator import seed
from tests import system as in_process

WORKSPACE = "ws_cli"
HMAC_SECRET = b"cli-hmac-secret-0123456789abcdef-0123456789"
ISSUER = "https://idp.cli-test.askvault.invalid/"
AGENT_INBOX = "agents@support.cli"
_databases = itertools.count()


def user_hash(user_id: str) -> str:
    return hmac.new(HMAC_SECRET, user_id.encode(), hashlib.sha256).hexdigest()


@dataclass
class CliSystem:
    """The running system and what the CLI needs to reach it."""

    system: in_process.System
    provider: LocalIdentityProvider
    idp_dir: Path
    summary: dict[str, Any]
    addresses: dict[str, str]
    home: Path

    def token(self, subject: str, workspaces: tuple[str, ...] = ("*",), **claims: Any) -> str:
        return self.provider.issue(subject, workspaces, **claims)

    def environment(self, token: str | None = None, **extra: str | None) -> dict[str, str | None]:
        """The CLI's environment: the services' addresses, the workspace, the credential
        (none: no stored one either, the config directory is empty)."""
        values: dict[str, str | None] = {
            f"ASKVAULT_{service.upper()}_ADDR": address
            for service, address in self.addresses.items()
        }
        values.update(
            {
                "ASKVAULT_WORKSPACE": WORKSPACE,
                "ASKVAULT_ADMIN_TOKEN": token,
                "ASKVAULT_ADMIN_TOKEN_FILE": None,
                "ASKVAULT_CONFIG_DIR": str(self.home),
                "ASKVAULT_TIMEOUT": "10",
                "STRIPE_SECRET_KEY": None,
                # Wide tables: ids are never folded across lines.
                "COLUMNS": "250",
            }
        )
        values.update(extra)
        return values

    async def run(
        self, *args: str, token: str | None = None, input: str | None = None, **extra: str | None
    ) -> Result:
        """``askvault ARGS`` in-process (typer's CliRunner), in a thread: the servers run on
        this event loop and the CLI's calls block."""
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, app, list(args), input=input, env=self.environment(token, **extra)
        )

    async def turn(self, user: str, text: str, conversation: str) -> dict[str, Any]:
        """A chat turn of a verified visitor at the edge."""
        async with self.system.http.post(
            f"{self.system.edge_url}/v1/chat/turns",
            json={
                "workspace_id": WORKSPACE,
                "conversation_id": conversation,
                "visitor": {
                    "user_id": user,
                    "email": f"{user}@example.com",
                    "user_hash": user_hash(user),
                },
                "text": text,
            },
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body


def admin_metadata(provider: LocalIdentityProvider, subject: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {provider.issue(subject)}"),)


@pytest.fixture(scope="module")
async def module_database(postgres_server: str, template_database: str) -> AsyncIterator[str]:
    """A fresh database for the module's system, cloned from the migrated template."""
    name = f"askvault_cli_{os.getpid()}_{next(_databases)}"
    connection = await asyncpg.connect(postgres_server)
    try:
        await connection.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        yield database.with_database_name(postgres_server, name)
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def cli_system(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CliSystem]:
    """Everything running; the servers trust the provider in ``idp_dir`` (as the local stack's
    services trust .data/admin-idp); the workspace provisioned by admin-ops."""
    base = tmp_path_factory.mktemp("cli")
    idp_dir = base / "admin-idp"
    provider = LocalIdentityProvider.load_or_create(idp_dir, ISSUER)
    trusted: Mapping[str, str] = {
        "admin_issuer": ISSUER,
        "admin_jwks_file": str(idp_dir / "jwks.json"),
    }
    with pytest.MonkeyPatch.context() as patch:
        # Every server of the system reads its admin settings when it starts.
        patch.setattr(testing, "admin_settings", lambda: dict(trusted))
        context = in_process.running(
            module_database,
            in_process.Secrets(),
            whatsapp_workspaces=WORKSPACE,
            agent_inbox=AGENT_INBOX,
        )
        system = await context.__aenter__()
    try:
        summary = seed.seed_demo(system.emulator.state)
        await in_process.provision_workspace(
            system,
            WORKSPACE,
            hmac_secret=HMAC_SECRET,
            stripe_key=seed.DEMO_API_KEY,
            admin=admin_metadata(provider, "admin-ops"),
            key_prefix="cli",
        )
        home = base / "home"
        home.mkdir()
        yield CliSystem(
            system=system,
            provider=provider,
            idp_dir=idp_dir,
            summary=summary,
            addresses={
                "identity": system.identity_server.address,
                "policy": system.policy_server.address,
                "billing_gateway": system.billing_server.address,
                "notifier": system.notifier_server.address,
            },
            home=home,
        )
    finally:
        await context.__aexit__(None, None, None)
