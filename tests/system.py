"""The whole system in-process, shared by the end-to-end, security and benchmark suites: the
Stripe emulator, the SMTP sink, the WhatsApp emulator, identity, policy, the notifier (with
one outbox worker), the billing gateway and the edge, on free ports and one database, with
short intervals so that tests see retries and workers act within seconds."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import stripe

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from edge import service as edge_service
from edge.settings import EdgeSettings
from identity.service import IdentityService
from identity.settings import IdentitySettings
from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing
from runtime.server import RunningService
from smtp_sink import app as smtp_sink_app
from stripe_emulator import app as stripe_app
from whatsapp_emulator import app as whatsapp_app

PHONE_NUMBER_ID = "1000000001"
# The workspaces' time zone in the in-process system: policy's default (DEFAULT_TIME_ZONE),
# so every provisioned workspace's bounds carry it; the edge speaks dates in it because policy
# says so (GetWorkspaceTerms), its own WORKSPACE_TIMEZONE fallback staying UTC.
WORKSPACE_TIMEZONE = "America/New_York"

Metadata = tuple[tuple[str, str], ...]


def random_key() -> str:
    """A fresh 32-byte key, base64, as the services' key settings take it."""
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Secrets:
    """Every key and secret the running system is given (tests that scan for leaks pick
    their own, distinctive values)."""

    identity_encryption: str = field(default_factory=random_key)
    identity_signing: str = field(default_factory=random_key)
    billing_encryption: str = field(default_factory=random_key)
    edge_encryption: str = field(default_factory=random_key)
    audit_mac: str = field(default_factory=random_key)
    whatsapp_app_secret: str = "wa-app-secret"
    whatsapp_verify_token: str = "wa-verify"
    whatsapp_token: str = "wa-access-token"


@dataclass
class System:
    """The running parts and a client for each."""

    emulator: stripe_app.RunningEmulator
    sink: smtp_sink_app.RunningSink
    whatsapp: whatsapp_app.RunningEmulator
    identity_server: RunningService
    policy_server: RunningService
    notifier_server: RunningService
    billing_server: RunningService
    edge_url: str
    http: aiohttp.ClientSession
    stripe_http: stripe.AIOHTTPClient
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    billing: billing_pb2_grpc.BillingGatewayServiceAsyncStub
    notifier: notifier_pb2_grpc.NotifierServiceAsyncStub

    def stripe_client(self, api_key: str) -> stripe.StripeClient:
        """The official SDK on the emulator, as the account of ``api_key``."""
        return stripe.StripeClient(
            api_key, base_addresses={"api": self.emulator.url}, http_client=self.stripe_http
        )


# -- one service at a time ------------------------------------------------------------------
# Each starter runs its service as a login of the service's role, as in production, migrating
# (nothing is left to apply) as the owner, ``database_url``; ``values`` override its settings.
# Started services stop when ``exits`` closes, in reverse order.


async def start_identity(
    exits: contextlib.AsyncExitStack, database_url: str, secrets: Secrets, **values: Any
) -> RunningService:
    """Identity, with the system's encryption and assertion signing keys."""
    settings = testing.make_settings(
        IdentitySettings,
        await testing.service_database_url(database_url, "identity"),
        migration_database_url=database_url,
        secrets_encryption_keys=f"k1:{secrets.identity_encryption}",
        assertion_signing_keys=f"a1:{secrets.identity_signing}",
        **values,
    )
    return await exits.enter_async_context(testing.running(IdentityService(settings), settings))


async def start_policy(
    exits: contextlib.AsyncExitStack,
    database_url: str,
    secrets: Secrets,
    *,
    identity_target: str,
    **values: Any,
) -> RunningService:
    """Policy, verifying assertions with identity's keys, with the system's audit key."""
    settings = testing.make_settings(
        PolicySettings,
        await testing.service_database_url(database_url, "policy"),
        migration_database_url=database_url,
        identity_target=identity_target,
        audit_mac_keys=f"a1:{secrets.audit_mac}",
        **values,
    )
    return await exits.enter_async_context(testing.running(PolicyService(settings), settings))


# The notifier's defaults here (a test's values replace them): one outbox worker, polls and
# retries within a tenth of a second, providers given up on within seconds.
_QUICK_NOTIFIER: dict[str, Any] = {
    "smtp_timeout_seconds": 2.0,
    "whatsapp_timeout_seconds": 1.0,
    "worker_count": 1,
    "poll_interval_seconds": 0.05,
    "retry_backoff_base_seconds": 0.05,
    "retry_backoff_cap_seconds": 0.2,
}


async def start_notifier(
    exits: contextlib.AsyncExitStack,
    database_url: str,
    sink: smtp_sink_app.RunningSink,
    **values: Any,
) -> RunningService:
    """The notifier emailing ``sink``: one outbox worker, quick polls and retries."""
    settings = testing.make_settings(
        NotifierSettings,
        await testing.service_database_url(database_url, "notifier"),
        migration_database_url=database_url,
        smtp_host=sink.host,
        smtp_port=sink.smtp_port,
        **{**_QUICK_NOTIFIER, **values},
    )
    return await exits.enter_async_context(testing.running(NotifierService(settings), settings))


async def billing_settings(
    database_url: str,
    secrets: Secrets,
    *,
    identity_target: str,
    policy_target: str,
    notifier_target: str,
    stripe_api_base: str,
    **values: Any,
) -> BillingGatewaySettings:
    """The billing gateway's settings, on its neighbours and the Stripe at
    ``stripe_api_base``."""
    return testing.make_settings(
        BillingGatewaySettings,
        await testing.service_database_url(database_url, "billing_gateway"),
        migration_database_url=database_url,
        secrets_encryption_keys=f"k1:{secrets.billing_encryption}",
        identity_target=identity_target,
        policy_target=policy_target,
        notifier_target=notifier_target,
        stripe_api_base=stripe_api_base,
        **values,
    )


async def start_billing(
    exits: contextlib.AsyncExitStack,
    settings: BillingGatewaySettings,
    service: BillingGatewayService | None = None,
) -> RunningService:
    """The billing gateway (``service`` when a test built it, with its own clock)."""
    return await exits.enter_async_context(
        testing.running(service or BillingGatewayService(settings), settings)
    )


# -- the whole system --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    database_url: str,
    secrets: Secrets,
    *,
    whatsapp_workspaces: str,
    agent_inbox: str,
    edge_values: Mapping[str, Any] | None = None,
    health_probe_interval_seconds: float = 0.2,
) -> AsyncIterator[System]:
    """Starts the emulators and the five services in dependency order; stops them in
    reverse. ``edge_values`` override the edge's settings; every service (edge included)
    probes its database every ``health_probe_interval_seconds``."""
    probe = {"health_probe_interval_seconds": health_probe_interval_seconds}
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stripe_app.start()
        stack.push_async_callback(emulator.close)
        sink = await smtp_sink_app.start()
        stack.push_async_callback(sink.close)
        whatsapp = await whatsapp_app.start(
            state=whatsapp_app.State(
                access_token=secrets.whatsapp_token,
                app_secret=secrets.whatsapp_app_secret,
                status_delay_seconds=0.05,
            )
        )
        stack.push_async_callback(whatsapp.close)
        stripe_http = stripe.AIOHTTPClient()
        stack.push_async_callback(stripe_http.close_async)
        identity = await start_identity(stack, database_url, secrets, **probe)
        policy = await start_policy(
            stack,
            database_url,
            secrets,
            identity_target=identity.address,
            default_time_zone=WORKSPACE_TIMEZONE,
            **probe,
        )
        notifier = await start_notifier(
            stack,
            database_url,
            sink,
            whatsapp_base_url=whatsapp.url,
            whatsapp_access_token=secrets.whatsapp_token,
            whatsapp_phone_number_id=PHONE_NUMBER_ID,
            max_attempts=3,
            agent_inbox_address=agent_inbox,
            **probe,
        )
        billing_config = await billing_settings(
            database_url,
            secrets,
            identity_target=identity.address,
            policy_target=policy.address,
            notifier_target=notifier.address,
            stripe_api_base=emulator.url,
            # Generous: a loaded machine must not turn a slow answer into "Stripe is down"
            # (faults make Stripe fail fast where a test wants that).
            stripe_timeout_seconds=10.0,
            stripe_max_network_retries=0,
            webhook_poll_seconds=0.1,
            scheduler_poll_seconds=0.2,
            # The mirror's backfill done within a second of connecting; one catch-up right
            # after it, the next an hour later (tests that compare snapshots see no worker
            # change a row between them).
            mirror_backfill_pages_per_second=20.0,
            mirror_catch_up_interval_seconds=3600.0,
            **probe,
        )
        billing = await start_billing(stack, billing_config)
        edge_settings = testing.make_settings(
            EdgeSettings,
            await testing.service_database_url(database_url, "edge"),
            migration_database_url=database_url,
            http_host="127.0.0.1",
            http_port=0,
            identity_target=identity.address,
            policy_target=policy.address,
            billing_target=billing.address,
            notifier_target=notifier.address,
            whatsapp_app_secret=secrets.whatsapp_app_secret,
            whatsapp_verify_token=secrets.whatsapp_verify_token,
            whatsapp_workspaces=whatsapp_workspaces,
            secrets_encryption_keys=f"k1:{secrets.edge_encryption}",
            **probe,
            **{
                "visitor_turns_per_minute": 100_000,
                # Generous for a loaded machine; tests of slowness set their own.
                "rpc_deadline_seconds": 10.0,
                "billing_deadline_seconds": 10.0,
                "address_requests_per_minute": 100_000,
                "customer_turns_per_minute": 100_000,
                # Tests change bounds between turns; the cache has its own unit test.
                "workspace_terms_ttl_seconds": 0.0,
                **(edge_values or {}),
            },
        )
        # The edge serves the process's metrics at /metrics, as a deployed edge does.
        testing.served_metrics()
        edge = await edge_service.start(edge_settings)
        stack.push_async_callback(edge.stop, 1.0)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        channels = [
            await stack.enter_async_context(grpc.aio.insecure_channel(server.address))
            for server in (identity, policy, billing, notifier)
        ]
        whatsapp.state.webhook_url = f"{edge.url}/api/whatsapp/webhook"
        yield System(
            emulator=emulator,
            sink=sink,
            whatsapp=whatsapp,
            identity_server=identity,
            policy_server=policy,
            notifier_server=notifier,
            billing_server=billing,
            edge_url=edge.url,
            http=http,
            stripe_http=stripe_http,
            identity=identity_pb2_grpc.IdentityServiceStub(channels[0]),
            policy=policy_pb2_grpc.PolicyServiceStub(channels[1]),
            billing=billing_pb2_grpc.BillingGatewayServiceStub(channels[2]),
            notifier=notifier_pb2_grpc.NotifierServiceStub(channels[3]),
        )


async def provision_workspace(
    system: System,
    workspace_id: str,
    *,
    hmac_secret: bytes,
    stripe_key: str,
    admin: Metadata,
    key_prefix: str,
    token_secret: bytes = b"",
    customer_metadata_key: str = "askvault_user_id",
) -> None:
    """What an operator does for a new workspace: its user_hash secret (and, when it signs
    visitor tokens, a distinct token secret), the Stripe metadata key naming its user ids,
    the Business plan with default bounds, and its Stripe account connected with the edge as
    webhook endpoint."""
    secrets = [("k1", hmac_secret, identity_pb2.SECRET_PURPOSE_USER_HASH)]
    if token_secret:
        secrets.append(("t1", token_secret, identity_pb2.SECRET_PURPOSE_VISITOR_TOKEN))
    for key_id, secret, purpose in secrets:
        await system.identity.AddSecret(
            identity_pb2.AddSecretRequest(
                workspace_id=workspace_id,
                key_id=key_id,
                secret=secret,
                purpose=purpose,
                idempotency_key=f"{key_prefix}-secret-{key_id}",
            ),
            metadata=admin,
            timeout=5,
        )
    if customer_metadata_key:
        await system.identity.UpdateWorkspaceSettings(
            identity_pb2.UpdateWorkspaceSettingsRequest(
                workspace_id=workspace_id,
                settings=identity_pb2.WorkspaceSettings(
                    customer_metadata_key=customer_metadata_key
                ),
                idempotency_key=f"{key_prefix}-identity-settings",
            ),
            metadata=admin,
            timeout=5,
        )
    current = await system.policy.GetBounds(
        policy_pb2.GetBoundsRequest(workspace_id=workspace_id), timeout=5
    )
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.defaults)
    bounds.workspace_id = workspace_id
    bounds.askvault_plan = policy_pb2.ASK_VAULT_PLAN_BUSINESS
    await system.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=workspace_id, bounds=bounds, idempotency_key=f"{key_prefix}-bounds"
        ),
        metadata=admin,
        timeout=5,
    )
    await system.billing.ConnectAccount(
        billing_pb2.ConnectAccountRequest(
            workspace_id=workspace_id,
            secret_key=stripe_key,
            webhook_url=f"{system.edge_url}/api/stripe/webhooks/{workspace_id}",
            idempotency_key=f"{key_prefix}-connect",
        ),
        metadata=admin,
        timeout=10,
    )
