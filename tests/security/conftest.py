"""The whole system in-process once per module, for fuzzing and security checks.

Like ``tests/e2e/conftest.py`` but with every secret known to the test (so that the logs and
the tables can be scanned for them), two tenants each with its own Stripe account in the
emulator (workspace A and workspace B), and a handler that captures every log record of the
process, formatted as production formats it. Also: a snapshot of every table of every
service schema (row count and content hash), to prove that refused requests change nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import hypothesis
import pytest
import stripe

from askvault.billing.v1 import billing_pb2_grpc
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2_grpc
from runtime import database, logs, testing
from smtp_sink import app as smtp_sink_app
from stripe_emulator import seed
from stripe_emulator.app import RunningEmulator
from tests import system as in_process
from whatsapp_emulator import app as whatsapp_app

# Modest example counts: the folder must run in well under 90 s on two slow cores. Set
# ASKVAULT_FUZZ_EXAMPLES to fuzz longer (a nightly run, or while hunting a bug).
FUZZ_EXAMPLES = int(os.environ.get("ASKVAULT_FUZZ_EXAMPLES", "30"))
hypothesis.settings.register_profile(
    "security",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
    print_blob=True,
)

WORKSPACE_A = "ws_sec_a"
WORKSPACE_B = "ws_sec_b"
# The workspace a fuzzing admin credential is scoped to: admin RPCs there may succeed
# without touching the tenants the other checks rely on.
WORKSPACE_FUZZ = "ws_sec_fuzz"
SERVICE_SCHEMAS = ("identity", "policy", "billing_gateway", "notifier", "edge")

# Every secret of the system, distinctive enough to be found verbatim anywhere.
HMAC_SECRET_A = b"hmac-secret-of-workspace-a-5c7d2e9f41a8b3c6"
HMAC_SECRET_B = b"hmac-secret-of-workspace-b-0e1f2a3b4c5d6e7f"
# Visitor-token keys: other material than the user_hash secrets (issue 13).
TOKEN_SECRET_A = b"visitor-token-secret-of-workspace-a-81c4e7f2"
TOKEN_SECRET_B = b"visitor-token-secret-of-workspace-b-3d9a0b6e"
STRIPE_KEY_A = seed.DEMO_API_KEY
STRIPE_KEY_B = "sk_test_askvault_workspace_b_7f3e9a"
WHATSAPP_APP_SECRET = "whatsapp-app-secret-3d9c1b7a"
WHATSAPP_VERIFY_TOKEN = "whatsapp-verify-token-8e2f6a0c"
WHATSAPP_TOKEN = "whatsapp-access-token-4b8d2f6e"
PHONE_NUMBER_ID = in_process.PHONE_NUMBER_ID
AGENT_INBOX = "agents@support.security"


def _fixed_key(label: str) -> str:
    """A 32-byte key (base64), derived from a label so that the test knows it."""
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


IDENTITY_ENCRYPTION_KEY = _fixed_key("identity-encryption")
IDENTITY_SIGNING_KEY = _fixed_key("identity-assertion-signing")
BILLING_ENCRYPTION_KEY = _fixed_key("billing-encryption")
EDGE_ENCRYPTION_KEY = _fixed_key("edge-encryption")


def user_hash(user_id: str, secret: bytes = HMAC_SECRET_A) -> str:
    """What a workspace's backend computes for a visitor."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()


def email_of(user: str) -> str:
    """The demo email of a demo user id (``dev`` pays with UPI in India)."""
    return f"{user}@example.in" if user == "dev" else f"{user}@example.com"


def admin(subject: str, workspaces: list[str] | None = None, ttl_seconds: int = 3600) -> str:
    """A genuine admin credential (optionally scoped to workspaces)."""
    return testing.TEST_ADMIN_PROVIDER.issue(subject, workspaces or ("*",), ttl_seconds)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)


# Tables whose rows policy's chainer rewrites between them (see ``System.snapshot``).
CHAINED_AUDIT_TABLES = frozenset(
    {'"policy"."audit_events"', '"policy"."audit_pending"', '"policy"."audit_heads"'}
)
# The edge's rate-limit counters: every request counts against its address's budget, refused
# or not (that is what a limit is), so they change with each request; nothing else may.
REQUEST_COUNTERS = frozenset({'"edge"."rate_limit_windows"'})


class CapturedLogs(logging.Handler):
    """Keeps every record of the process, formatted exactly as production writes it."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self._formatter = logs.JsonFormatter("security-test")

    def emit(self, record: logging.LogRecord) -> None:
        # The emulators stand in for Stripe, Meta and a mail server: what they log is theirs.
        if record.name.split(".")[0] in ("stripe_emulator", "whatsapp_emulator", "smtp_sink"):
            return
        self.lines.append(self._formatter.format(record))


@dataclass(repr=False)
class System:
    """Addresses, clients and secrets of the running system."""

    edge_url: str
    stripe_url: str
    http: aiohttp.ClientSession
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    billing: billing_pb2_grpc.BillingGatewayServiceAsyncStub
    notifier: notifier_pb2_grpc.NotifierServiceAsyncStub
    emulator: RunningEmulator
    sink: smtp_sink_app.RunningSink
    whatsapp: whatsapp_app.RunningEmulator
    stripe_a: stripe.StripeClient
    stripe_b: stripe.StripeClient
    summary_a: dict[str, Any]
    summary_b: dict[str, Any]
    pool: asyncpg.Pool
    captured: CapturedLogs
    secrets: dict[str, str] = field(default_factory=dict)
    _tables: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        # Short: hypothesis prints the fixtures of a failing example.
        return f"System(edge={self.edge_url})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def customer(self, email: str, workspace: str = WORKSPACE_A) -> dict[str, Any]:
        """The seed summary of a demo customer in a workspace's Stripe account."""
        summary = self.summary_a if workspace == WORKSPACE_A else self.summary_b
        found: dict[str, Any] = summary["customers"][email]
        return found

    def stub(self, service: str) -> Any:
        """The gRPC stub of a service by its schema name."""
        return {
            "identity": self.identity,
            "policy": self.policy,
            "billing_gateway": self.billing,
            "notifier": self.notifier,
        }[service]

    async def assertion(self, user: str, workspace: str = WORKSPACE_A) -> str:
        """A verified visitor's identity assertion, linked to their Stripe customer."""
        secret = HMAC_SECRET_A if workspace == WORKSPACE_A else HMAC_SECRET_B
        request = identity_pb2.VerifyVisitorRequest(
            workspace_id=workspace,
            user_id=user,
            email=email_of(user),
            user_hash=user_hash(user, secret),
        )
        verified = await self.identity.VerifyVisitor(request, timeout=5)
        if not verified.contact.stripe_customer_id:
            await self.identity.LinkCustomer(
                identity_pb2.LinkCustomerRequest(
                    workspace_id=workspace,
                    contact_id=verified.contact.contact_id,
                    stripe_customer_id=self.customer(email_of(user), workspace)["customer"],
                    idempotency_key=f"link-{workspace}-{user}",
                ),
                metadata=bearer(admin("admin-provisioning", [workspace])),
                timeout=5,
            )
            verified = await self.identity.VerifyVisitor(request, timeout=5)
        return str(verified.identity_assertion)

    async def turn(
        self, user: str | None, text: str, conversation: str, workspace: str = WORKSPACE_A
    ) -> tuple[int, dict[str, Any]]:
        """One chat turn as a verified visitor (or anonymous): (HTTP status, body)."""
        visitor: dict[str, str] = {}
        if user is not None:
            secret = HMAC_SECRET_A if workspace == WORKSPACE_A else HMAC_SECRET_B
            visitor = {
                "user_id": user,
                "email": email_of(user),
                "user_hash": user_hash(user, secret),
            }
        async with self.http.post(
            f"{self.edge_url}/v1/chat/turns",
            json={
                "workspace_id": workspace,
                "conversation_id": conversation,
                "visitor": visitor,
                "text": text,
            },
        ) as response:
            return response.status, await response.json()

    def visitor_headers(self, user: str, workspace: str = WORKSPACE_A) -> dict[str, str]:
        """The X-AskVault-* headers of a verified visitor (tools and MCP)."""
        secret = HMAC_SECRET_A if workspace == WORKSPACE_A else HMAC_SECRET_B
        return {
            "X-AskVault-Workspace": workspace,
            "X-AskVault-User-Id": user,
            "X-AskVault-User-Email": email_of(user),
            "X-AskVault-User-Hash": user_hash(user, secret),
            "X-AskVault-Conversation": f"tools-{user}",
        }

    async def tool(
        self, user: str, name: str, arguments: dict[str, Any], workspace: str = WORKSPACE_A
    ) -> tuple[int, dict[str, Any]]:
        """A JSON tool call as a verified visitor."""
        async with self.http.post(
            f"{self.edge_url}/v1/tools/{name}",
            json={"arguments": arguments},
            headers=self.visitor_headers(user, workspace),
        ) as response:
            return response.status, await response.json()

    async def refunds(self) -> list[dict[str, Any]]:
        """Every refund in both tenants' Stripe accounts."""
        found: list[dict[str, Any]] = []
        for client in (self.stripe_a, self.stripe_b):
            page = await client.v1.refunds.list_async({"limit": 100})
            found.extend(refund.to_dict() for refund in page.data)
        return found

    async def subscriptions(self) -> list[tuple[str, str, str, bool]]:
        """(id, status, price, cancel_at_period_end) of every subscription of both tenants."""
        found: list[tuple[str, str, str, bool]] = []
        for client in (self.stripe_a, self.stripe_b):
            page = await client.v1.subscriptions.list_async({"limit": 100, "status": "all"})
            for found_subscription in page.data:
                subscription = found_subscription.to_dict()
                price = str(subscription["items"]["data"][0]["price"]["id"])
                found.append(
                    (
                        str(subscription["id"]),
                        str(subscription["status"]),
                        price,
                        bool(subscription.get("cancel_at_period_end")),
                    )
                )
        return sorted(found)

    async def tables(self) -> list[str]:
        """Every table of every service schema, ``schema.table``."""
        if not self._tables:
            async with self.pool.acquire() as connection:
                rows = await connection.fetch(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' AND table_schema = ANY($1::text[]) "
                    "ORDER BY 1, 2",
                    list(SERVICE_SCHEMAS),
                )
            self._tables = [f'"{row[0]}"."{row[1]}"' for row in rows]
        return self._tables

    async def snapshot(self) -> dict[str, tuple[int, str]]:
        """Row count and content hash of every table of every service schema."""
        # Table names come from information_schema, not from input.
        parts = [
            f"SELECT '{table}', count(*), "  # noqa: S608
            f"md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            for table in await self.tables()
            if table not in CHAINED_AUDIT_TABLES | REQUEST_COUNTERS
        ]
        # Policy's chainer moves audit entries from audit_pending into audit_events (and
        # advances audit_heads) on its own schedule, whatever a request does: the entries
        # are compared as one set, by their ids, wherever they are.
        parts.append(
            "SELECT 'policy audit entries', count(*), "
            "md5(coalesce(string_agg(id, '|' ORDER BY id), '')) FROM ("
            " SELECT workspace_id || ':' || coalesce(entry_id, 'seq' || sequence) AS id"
            " FROM policy.audit_events"
            " UNION SELECT workspace_id || ':' || entry_id FROM policy.audit_pending) entries"
        )
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(" UNION ALL ".join(parts))
        return {str(row[0]): (int(row[1]), str(row[2])) for row in rows}

    async def pending_work(self) -> int:
        """Work due that no worker has taken yet: Stripe events not yet processed, the
        mirror's backfill pages and catch-ups, messages not yet claimed (a claimed message's
        next attempt is a lease ahead; the quiet period covers its delivery)."""
        async with self.pool.acquire(timeout=10) as connection:
            found = await connection.fetchval(
                "SELECT (SELECT count(*) FROM billing_gateway.stripe_events"
                "        WHERE processed_at IS NULL AND next_attempt_at <= now())"
                "     + (SELECT count(*) FROM notifier.messages"
                "        WHERE status = 'queued' AND next_attempt_at <= now())"
                # The billing gateway's mirror: backfill pages and catch-ups due.
                "     + (SELECT count(*) FROM billing_gateway.mirror_backfills"
                "        WHERE NOT done AND next_attempt_at <= now())"
                "     + (SELECT count(*) FROM billing_gateway.mirror_workspaces"
                "        WHERE next_catch_up_at <= now() AND caught_up_to IS NOT NULL)"
            )
        return int(found)

    async def settled_snapshot(
        self, quiet_seconds: float = 0.3, limit_seconds: float = 10.0
    ) -> Any:
        """The snapshot once the workers have nothing left to do (the outbox, webhook and
        scheduler workers finished what earlier requests gave them) and then nothing changed
        for ``quiet_seconds`` (late callbacks such as WhatsApp statuses). A worker pausing
        longer than the quiet period under load can no longer pass for settled while its
        queue holds work."""
        deadline = time.monotonic() + limit_seconds
        while await self.pending_work() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        current = await self.snapshot()
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet_seconds)
            latest = await self.snapshot()
            if latest == current and not await self.pending_work():
                return latest
            current = latest
        return current

    async def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table of every service schema."""
        found: dict[str, list[dict[str, Any]]] = {}
        async with self.pool.acquire() as connection:
            for table in await self.tables():
                found[table] = [
                    dict(row)
                    for row in await connection.fetch(f"SELECT * FROM {table}")  # noqa: S608
                ]
        return found


@pytest.fixture(scope="module")
async def module_database_url(postgres_server: str, template_database: str) -> AsyncIterator[str]:
    """A fresh database (every schema migrated) for one test module."""
    name = f"askvault_sec_{os.getpid()}_{os.urandom(4).hex()}"
    connection = await asyncpg.connect(postgres_server)
    try:
        await connection.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        yield database.with_database_name(postgres_server, name)
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def system(module_database_url: str) -> AsyncIterator[System]:
    """Everything running, workspaces A and B provisioned, every log record captured."""
    captured = CapturedLogs()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(captured)
    root.setLevel(logging.INFO)
    try:
        async with _running(module_database_url, captured) as running:
            yield running
    finally:
        root.removeHandler(captured)
        root.setLevel(previous_level)


@contextlib.asynccontextmanager
async def _running(database_url: str, captured: CapturedLogs) -> AsyncIterator[System]:
    """The whole system in-process with this suite's known secrets, both tenants seeded and
    provisioned."""
    secrets = in_process.Secrets(
        identity_encryption=IDENTITY_ENCRYPTION_KEY,
        identity_signing=IDENTITY_SIGNING_KEY,
        billing_encryption=BILLING_ENCRYPTION_KEY,
        edge_encryption=EDGE_ENCRYPTION_KEY,
        whatsapp_app_secret=WHATSAPP_APP_SECRET,
        whatsapp_verify_token=WHATSAPP_VERIFY_TOKEN,
        whatsapp_token=WHATSAPP_TOKEN,
    )
    async with in_process.running(
        database_url, secrets, whatsapp_workspaces=WORKSPACE_A, agent_inbox=AGENT_INBOX
    ) as running:
        summary_a = seed.seed_demo(running.emulator.state, STRIPE_KEY_A)
        summary_b = seed.seed_demo(running.emulator.state, STRIPE_KEY_B)
        for workspace, secret, token_secret, key in (
            (WORKSPACE_A, HMAC_SECRET_A, TOKEN_SECRET_A, STRIPE_KEY_A),
            (WORKSPACE_B, HMAC_SECRET_B, TOKEN_SECRET_B, STRIPE_KEY_B),
        ):
            await in_process.provision_workspace(
                running,
                workspace,
                hmac_secret=secret,
                token_secret=token_secret,
                stripe_key=key,
                admin=bearer(admin("admin-provisioning", [workspace])),
                key_prefix="sec",
            )
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            system = System(
                edge_url=running.edge_url,
                stripe_url=running.emulator.url,
                http=running.http,
                identity=running.identity,
                policy=running.policy,
                billing=running.billing,
                notifier=running.notifier,
                emulator=running.emulator,
                sink=running.sink,
                whatsapp=running.whatsapp,
                stripe_a=running.stripe_client(STRIPE_KEY_A),
                stripe_b=running.stripe_client(STRIPE_KEY_B),
                summary_a=summary_a,
                summary_b=summary_b,
                pool=pool,
                captured=captured,
            )
            system.secrets = _secrets(system)
            # The billing gateway's mirror backfilled and caught up once: no worker changes a
            # row under the tests' before/after snapshots afterwards.
            await system.settled_snapshot(limit_seconds=30.0)
            yield system
        finally:
            await pool.close()


def signing_secrets(system: System) -> list[str]:
    """Every webhook signing secret the emulator issued (one endpoint per tenant)."""
    found = []
    for account in system.emulator.state.accounts.values():
        for entry in account.table("webhook_secret").values():
            found.append(str(entry["secret"]))
    return found


def _secrets(system: System) -> dict[str, str]:
    """Name -> value of every secret a log line or a table must never hold."""
    found = {
        "hmac secret A": HMAC_SECRET_A.decode(),
        "hmac secret B": HMAC_SECRET_B.decode(),
        "stripe secret key A": STRIPE_KEY_A,
        "stripe secret key B": STRIPE_KEY_B,
        "whatsapp app secret": WHATSAPP_APP_SECRET,
        "whatsapp verify token": WHATSAPP_VERIFY_TOKEN,
        "whatsapp access token": WHATSAPP_TOKEN,
        "admin provider private key": testing.TEST_ADMIN_PROVIDER.private_pem(),
        "identity encryption key": IDENTITY_ENCRYPTION_KEY,
        "identity assertion signing key": IDENTITY_SIGNING_KEY,
        "billing encryption key": BILLING_ENCRYPTION_KEY,
        "edge encryption key": EDGE_ENCRYPTION_KEY,
    }
    for index, secret in enumerate(signing_secrets(system)):
        found[f"webhook signing secret {index}"] = secret
    # A visitor's HMAC is a credential too: it proves who they are for as long as the
    # workspace's secret lives.
    for user in ("alice", "bob", "carol", "dev", "erin"):
        found[f"user hash of {user}"] = user_hash(user)
    return found
