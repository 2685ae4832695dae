"""Fixtures for the billing gateway's tests: the Stripe emulator in process (seeded with the
demo catalog and customers), real identity and policy servers, a small real gRPC notifier
that records what it is asked to send, a webhook receiver that forwards Stripe's deliveries
to IngestStripeEvent (the edge's job), and the gateway itself with a hand-moved clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from aiohttp import web

from askvault.billing.v1 import billing_pb2 as pb
from askvault.billing.v1 import billing_pb2_grpc
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from identity.service import IdentityService
from identity.settings import IdentitySettings
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing
from runtime.server import RunningService
from stripe_emulator import app, seed
from stripe_emulator.app import RunningEmulator

WORKSPACE = "ws_billing"
_keys = itertools.count()


def key(prefix: str = "k") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class TestClock:
    """The gateway's clock, moved by hand."""

    __test__ = False

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Moves the clock."""
        self.now += delta


class RecordingNotifier(notifier_pb2_grpc.NotifierServiceServicer):
    """A real NotifierService that keeps one message per dedup key, as the notifier does."""

    def __init__(self) -> None:
        self.requests: list[notifier_pb2.SendRequest] = []
        self.by_dedup: dict[str, notifier_pb2.SendRequest] = {}
        self.unavailable = False

    async def Send(
        self, request: notifier_pb2.SendRequest, context: grpc.aio.ServicerContext
    ) -> notifier_pb2.SendResponse:
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        self.requests.append(request)
        duplicate = request.dedup_key in self.by_dedup
        self.by_dedup.setdefault(request.dedup_key, request)
        return notifier_pb2.SendResponse(
            message=notifier_pb2.Message(message_id=f"msg_{len(self.by_dedup)}"),
            deduplicated=duplicate,
        )

    def messages(self, template: int) -> list[notifier_pb2.SendRequest]:
        """The distinct messages of a template."""
        return [m for m in self.by_dedup.values() if m.template == template]


@dataclass
class Stack:
    """Everything a billing test talks to."""

    billing: billing_pb2_grpc.BillingGatewayServiceStub
    identity: identity_pb2_grpc.IdentityServiceStub
    policy: policy_pb2_grpc.PolicyServiceStub
    emulator: RunningEmulator
    demo: dict[str, Any]
    service: BillingGatewayService
    running: RunningService
    settings: BillingGatewaySettings
    clock: TestClock
    notifier: RecordingNotifier
    webhook_url: str
    database_url: str
    hmac_secret: bytes = field(default_factory=lambda: os.urandom(32))
    deliveries: list[tuple[bytes, str, grpc.StatusCode]] = field(default_factory=list)

    def customer(self, email: str) -> str:
        """The demo customer id of an email."""
        return str(self.demo["customers"][email]["customer"])

    async def assertion(self, email: str, link: bool = True) -> str:
        """A verified visitor's assertion, linked to the demo customer of the email."""
        user_hash = hmac.new(self.hmac_secret, email.encode(), hashlib.sha256).hexdigest()
        request = identity_pb2.VerifyVisitorRequest(
            workspace_id=WORKSPACE, user_id=email, email=email, user_hash=user_hash
        )
        verified = await self.identity.VerifyVisitor(request)
        if not link:
            return str(verified.identity_assertion)
        await self.identity.LinkCustomer(
            identity_pb2.LinkCustomerRequest(
                workspace_id=WORKSPACE,
                contact_id=verified.contact.contact_id,
                stripe_customer_id=self.customer(email),
                idempotency_key=key("link"),
            )
        )
        return str((await self.identity.VerifyVisitor(request)).identity_assertion)

    async def grant(
        self, assertion: str, action: int, details: policy_pb2.ActionDetails
    ) -> policy_pb2.Grant:
        """A grant from the real policy service (confirmed, within bounds)."""
        decision = await self.policy.Authorize(
            policy_pb2.AuthorizeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                action=action,  # type: ignore[arg-type]
                details=details,
                confirmed=True,
                idempotency_key=key("auth"),
            )
        )
        assert decision.decision == policy_pb2.DECISION_ALLOW, decision
        grant: policy_pb2.Grant = decision.grant
        return grant

    async def flush_webhooks(self) -> None:
        """Delivers every pending Stripe webhook to the gateway."""
        await self.emulator.dispatcher.flush(10.0)

    def fresh_service(self) -> tuple[BillingGatewayService, BillingGatewaySettings]:
        """Another gateway instance on the same database (a restart)."""
        service = BillingGatewayService(self.settings, clock=self.clock)
        return service, self.settings


def usd(amount: int) -> common_pb2.Money:
    """US cents."""
    return common_pb2.Money(amount_minor=amount, currency="usd")


async def _webhook_receiver(
    deliveries: list[tuple[bytes, str, grpc.StatusCode]],
    target: list[billing_pb2_grpc.BillingGatewayServiceStub],
) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Stripe-Signature", "")
        try:
            await target[0].IngestStripeEvent(
                pb.IngestStripeEventRequest(
                    workspace_id=WORKSPACE, payload=body, signature_header=header
                )
            )
            deliveries.append((body, header, grpc.StatusCode.OK))
            return web.Response(text="ok")
        except grpc.aio.AioRpcError as error:
            deliveries.append((body, header, error.code()))
            return web.Response(status=400, text=str(error.code()))

    receiver = web.Application()
    receiver.router.add_post("/stripe", handle)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://127.0.0.1:{port}/stripe"


def billing_settings(database_url: str, **values: Any) -> BillingGatewaySettings:
    """Gateway settings for tests: workers started by hand, quick breaker and retries."""
    defaults: dict[str, Any] = {
        "secrets_encryption_keys": f"k1:{_b64()}",
        "run_workers": False,
        "breaker_failure_threshold": 3,
        "breaker_cooldown_seconds": 0.5,
        "stripe_retry_backoff_seconds": 0.01,
        "stripe_max_network_retries": 1,
        "stripe_timeout_seconds": 2.0,
    }
    defaults.update(values)
    return testing.make_settings(BillingGatewaySettings, database_url, **defaults)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """The whole neighbourhood of the gateway, connected to the seeded demo account."""
    emulator = await app.start()
    demo = seed.seed_demo(emulator.state)
    identity_config = testing.make_settings(
        IdentitySettings,
        database_url,
        secrets_encryption_keys=f"k1:{_b64()}",
        assertion_signing_keys=f"a1:{_b64()}",
    )
    notifier = RecordingNotifier()  # type: ignore[abstract]
    notifier_server = grpc.aio.server()
    notifier_pb2_grpc.add_NotifierServiceServicer_to_server(notifier, notifier_server)
    notifier_port = notifier_server.add_insecure_port("127.0.0.1:0")
    await notifier_server.start()
    deliveries: list[tuple[bytes, str, grpc.StatusCode]] = []
    stub_box: list[billing_pb2_grpc.BillingGatewayServiceStub] = []
    receiver, webhook_url = await _webhook_receiver(deliveries, stub_box)
    try:
        async with testing.running(IdentityService(identity_config), identity_config) as ident:
            policy_config = testing.make_settings(
                PolicySettings,
                database_url,
                identity_target=ident.address,
                expiry_interval_seconds=3600.0,
                default_refund_caps="usd:1000000",
            )
            config = billing_settings(
                database_url,
                identity_target=ident.address,
                notifier_target=f"127.0.0.1:{notifier_port}",
                stripe_api_base=emulator.url,
            )
            clock = TestClock()
            async with testing.running(PolicyService(policy_config), policy_config) as pol:
                config = config.model_copy(update={"policy_target": pol.address})
                service = BillingGatewayService(config, clock=clock)
                async with (
                    testing.running(service, config) as running,
                    grpc.aio.insecure_channel(running.address) as channel,
                    grpc.aio.insecure_channel(ident.address) as identity_channel,
                    grpc.aio.insecure_channel(pol.address) as policy_channel,
                ):
                    billing = billing_pb2_grpc.BillingGatewayServiceStub(channel)
                    stub_box.append(billing)
                    stack = Stack(
                        billing=billing,
                        identity=identity_pb2_grpc.IdentityServiceStub(identity_channel),
                        policy=policy_pb2_grpc.PolicyServiceStub(policy_channel),
                        emulator=emulator,
                        demo=demo,
                        service=service,
                        running=running,
                        settings=config,
                        clock=clock,
                        notifier=notifier,
                        webhook_url=webhook_url,
                        database_url=database_url,
                        deliveries=deliveries,
                    )
                    await _prepare(stack)
                    yield stack
    finally:
        await receiver.cleanup()
        await notifier_server.stop(0)
        await emulator.close()


async def _prepare(stack: Stack) -> None:
    await stack.identity.AddSecret(
        identity_pb2.AddSecretRequest(
            workspace_id=WORKSPACE,
            key_id="h1",
            secret=stack.hmac_secret,
            idempotency_key=key("secret"),
        ),
        metadata=testing.admin_metadata(),
    )
    current = await stack.policy.GetBounds(policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE))
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.defaults)
    bounds.ClearField("updated_at")
    bounds.askvault_plan = policy_pb2.ASK_VAULT_PLAN_BUSINESS
    bounds.refund_window.FromTimedelta(timedelta(days=365))
    bounds.cancellation_grace.FromTimedelta(timedelta(seconds=30))
    bounds.plan_changes_per_period = 100
    await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key=key("bounds")
        ),
        metadata=testing.admin_metadata(),
    )
    changes = await stack.policy.ListBoundsChanges(
        policy_pb2.ListBoundsChangesRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata(),
    )
    if changes.changes and changes.changes[0].state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
        await stack.policy.ApproveBoundsChange(
            policy_pb2.ApproveBoundsChangeRequest(
                workspace_id=WORKSPACE,
                change_id=changes.changes[0].change_id,
                idempotency_key=key("approve"),
            ),
            metadata=testing.admin_metadata("admin-bob"),
        )
    await stack.billing.ConnectAccount(
        pb.ConnectAccountRequest(
            workspace_id=WORKSPACE,
            secret_key=seed.DEMO_API_KEY,
            webhook_url=stack.webhook_url,
            idempotency_key=key("connect"),
        ),
        metadata=testing.admin_metadata(),
    )
