"""What ``make run`` starts: the processes of the stack (emulators first, then every
service by dependency) with their environment, ports and readiness checks, and the local
login roles the services run as."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

import asyncpg

from devstack import config
from devstack.processes import Child, port_open, serving
from runtime import database

# The local model emulator's API key (development only).
LOCAL_MODEL_API_KEY = "local-model-key"


def _exists(package: str) -> bool:
    return (config.ROOT / "services" / package / "__main__.py").exists() or (
        config.ROOT / "emulators" / package / "__main__.py"
    ).exists()


def plan(
    demo: config.DemoConfig,
    database_url: str,
    ports: Mapping[str, int] | None = None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    service_database_urls: Mapping[str, str] | None = None,
    llm: bool = False,
) -> list[Child]:
    """The processes to start, in order: emulators first, then services by dependency.

    ``database_url`` is the owner's: every service migrates with it (MIGRATION_DATABASE_URL)
    and runs with its entry of ``service_database_urls`` (a login of its service role, as in
    production), or with the owner's URL when it has none.
    ``ports`` replaces the ports of config/demo.toml (by the same names) and ``overrides``
    adds environment variables per process name: the chaos harness runs a second stack on
    free ports with shorter intervals; ``make run`` passes neither. ``llm`` (``make run
    LLM=1``) starts the scripted model emulator too and points the edge's LLM mode at it."""
    keys = config.local_keys()
    signing_keys = config.service_keys()
    python = sys.executable
    port = _port_of(demo, ports)
    stripe_key = os.environ.get("STRIPE_TEST_API_KEY", "")
    stripe_base = (
        "https://api.stripe.com" if stripe_key else f"http://127.0.0.1:{port('stripe_emulator')}"
    )
    common = {
        "DATABASE_URL": database_url,
        "MIGRATION_DATABASE_URL": database_url,
        # Admin credentials are verified with the local provider's public keys.
        **config.admin_environment(),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "SHUTDOWN_GRACE_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    targets = {
        "IDENTITY_TARGET": f"127.0.0.1:{port('identity')}",
        "POLICY_TARGET": f"127.0.0.1:{port('policy')}",
        "BILLING_TARGET": f"127.0.0.1:{port('billing_gateway')}",
        "NOTIFIER_TARGET": f"127.0.0.1:{port('notifier')}",
    }
    children: list[Child] = []
    if not stripe_key and _exists("stripe_emulator"):
        children.append(
            Child(
                "stripe_emulator",
                [
                    python,
                    "-m",
                    "stripe_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port("stripe_emulator")),
                    "--seed",
                ],
                {},
                port_open(port("stripe_emulator")),
                stripe_base,
            )
        )
    if _exists("smtp_sink"):
        children.append(
            Child(
                "smtp_sink",
                [
                    python,
                    "-m",
                    "smtp_sink",
                    "--smtp-port",
                    str(port("smtp_sink")),
                    "--http-port",
                    str(port("smtp_sink_http")),
                ],
                {},
                port_open(port("smtp_sink_http")),
                f"smtp://127.0.0.1:{port('smtp_sink')} (inbox http://127.0.0.1:{port('smtp_sink_http')})",
            )
        )
    if _exists("whatsapp_emulator"):
        children.append(
            Child(
                "whatsapp_emulator",
                [
                    python,
                    "-m",
                    "whatsapp_emulator",
                    "--port",
                    str(port("whatsapp_emulator")),
                    "--webhook-url",
                    f"http://127.0.0.1:{port('edge')}/api/whatsapp/webhook",
                ],
                {},
                port_open(port("whatsapp_emulator")),
                f"http://127.0.0.1:{port('whatsapp_emulator')}",
            )
        )
    llm_env: dict[str, str] = {}
    if llm and _exists("model_emulator"):
        children.append(
            Child(
                "model_emulator",
                [python, "-m", "model_emulator", "--port", str(port("model_emulator"))],
                {"MODEL_EMULATOR_API_KEY": LOCAL_MODEL_API_KEY},
                port_open(port("model_emulator")),
                f"http://127.0.0.1:{port('model_emulator')}/v1 (script: POST /_emulator/script)",
            )
        )
        llm_env = {
            "LLM_BASE_URL": f"http://127.0.0.1:{port('model_emulator')}/v1",
            "LLM_MODEL": "scripted-model",
            "LLM_API_KEY": LOCAL_MODEL_API_KEY,
        }
    service_env: dict[str, dict[str, str]] = {
        "identity": {
            "SECRETS_ENCRYPTION_KEYS": keys["SECRETS_ENCRYPTION_KEYS"],
            "ASSERTION_SIGNING_KEYS": keys["ASSERTION_SIGNING_KEYS"],
        },
        "policy": {
            "AUDIT_MAC_KEYS": keys["AUDIT_MAC_KEYS"],
            # A .data database from before the keyed chain holds plain entries; let them
            # verify locally (a deployment keyed from its first entry leaves this off).
            "AUDIT_ACCEPTS_UNKEYED_PREFIX": "true",
            # The demo workspace's zone: its bounds take the default when provisioned, and
            # the edge speaks in the zone policy tells it (GetWorkspaceTerms).
            "DEFAULT_TIME_ZONE": str(demo.raw["workspace"].get("timezone", "UTC")),
        },
        "notifier": {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port("smtp_sink")),
            "WHATSAPP_BASE_URL": f"http://127.0.0.1:{port('whatsapp_emulator')}",
            "WHATSAPP_ACCESS_TOKEN": "local-whatsapp-token",
            "WHATSAPP_PHONE_NUMBER_ID": "1000000001",
            "DEFAULT_FROM_ADDRESS": demo.raw["workspace"]["support_email"],
            "DEFAULT_SENDER_NAME": demo.raw["workspace"]["name"],
            "AGENT_INBOX_ADDRESS": demo.raw["workspace"]["agent_inbox"],
            # Seals the helpdesk signing secret an admin sets for a workspace
            # (askvault workspace helpdesk-secret).
            "SECRETS_ENCRYPTION_KEYS": keys["SECRETS_ENCRYPTION_KEYS"],
        },
        "billing_gateway": {
            "SECRETS_ENCRYPTION_KEYS": keys["SECRETS_ENCRYPTION_KEYS"],
            "STRIPE_API_BASE": stripe_base,
        },
        "console": {
            "HTTP_PORT": str(port("console")),
            "HTTP_HOST": "127.0.0.1",
            "PUBLIC_URL": f"http://127.0.0.1:{port('console')}",
            "WORKSPACE_ID": demo.workspace_id,
            "OIDC_DISCOVERY_URL": (
                f"http://127.0.0.1:{port('admin_idp')}/.well-known/openid-configuration"
            ),
            "SESSION_KEYS": keys["CONSOLE_SESSION_KEYS"],
            "EDGE_URL": f"http://127.0.0.1:{port('edge')}",
        },
        "edge": {
            "HTTP_PORT": str(port("edge")),
            "HTTP_HOST": "127.0.0.1",
            "WORKSPACE_CURRENCY": str(demo.raw["workspace"].get("currency", "usd")),
            "WHATSAPP_APP_SECRET": "local-whatsapp-app-secret",
            "WHATSAPP_VERIFY_TOKEN": "local-whatsapp-verify-token",
            "WHATSAPP_WORKSPACES": demo.workspace_id,
            "SECRETS_ENCRYPTION_KEYS": keys["SECRETS_ENCRYPTION_KEYS"],
            **llm_env,
        },
    }
    # The local identity provider over HTTP, for the console's sign-in (local use only): it
    # holds the provider's key (.data/admin-idp), which no service is given.
    children.append(
        Child(
            "admin_idp",
            [python, "-m", "devstack.oidc_provider", "--port", str(port("admin_idp"))],
            {},
            port_open(port("admin_idp")),
            f"http://127.0.0.1:{port('admin_idp')} (local OIDC provider)",
        )
    )
    for offset, (name, extra) in enumerate(service_env.items()):
        if not _exists(name):
            continue
        http = name in HTTP_PROCESSES
        env = {**common, **targets, **extra}
        # Service credentials on, so the local stack runs the allow-lists production runs:
        # each process signs with its own private key (and holds no other); the gRPC
        # services verify their callers with every service's public key.
        env["SERVICE_SIGNING_KEY"] = signing_keys[name].pem()
        if not http:
            env["SERVICE_PUBLIC_KEYS_FILE"] = str(config.public_keys_file())
        env["DATABASE_URL"] = (service_database_urls or {}).get(name, database_url)
        # The edge and the console serve HTTP on HTTP_PORT; GRPC_PORT is unused there.
        env["GRPC_PORT"] = "0" if http else str(port(name))
        env["METRICS_PORT"] = str(9461 + offset)
        ready = port_open(port(name)) if http else serving(port(name))
        address = f"http://127.0.0.1:{port(name)}" if http else f"127.0.0.1:{port(name)} (gRPC)"
        children.append(Child(name, [python, "-m", name], env, ready, address))
    for child in children:
        child.env.update((overrides or {}).get(child.name, {}))
    return children


# The processes of the stack that serve HTTP rather than gRPC.
HTTP_PROCESSES = frozenset({"edge", "console"})


def _port_of(demo: config.DemoConfig, ports: Mapping[str, int] | None) -> Callable[[str], int]:
    """The port of a process: from ``ports`` when given, else from the demo config."""
    if ports is None:
        return demo.port
    chosen = dict(ports)
    return lambda name: chosen[name]


async def service_database_urls(owner_url: str) -> dict[str, str]:
    """Per service with a schema: the URL of its local login role, a member of the service's
    group role (created here when absent; its migrations grant it), so that the local stack
    runs the services with the privileges production gives them. ``owner_url`` must be able
    to create roles (the embedded server's, or a superuser's DATABASE_URL)."""
    password = config.local_keys()["DATABASE_SERVICE_PASSWORD"]
    schemas = sorted(
        path.parent.parent.name
        for path in (config.ROOT / "services").glob("*/migrations/__init__.py")
    )
    connection = await asyncpg.connect(owner_url)
    try:
        for schema in schemas:
            await database.ensure_login_role(
                connection, schema, f"askvault_{schema}_local", password
            )
    finally:
        await connection.close()
    return {
        schema: database.with_credentials(owner_url, f"askvault_{schema}_local", password)
        for schema in schemas
    }
