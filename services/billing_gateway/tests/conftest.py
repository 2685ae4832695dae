"""Fixtures for the billing gateway's tests: the Stripe emulator in process (seeded with the
demo catalog and customers), real identity and policy servers started as the whole-system
harness (tests/system.py) starts them, a small real gRPC notifier
that records what it is asked to send (or the real notifier with an SMTP sink), a webhook
receiver that forwards Stripe's deliveries to IngestStripeEvent (the edge's job), and the
gateway itself with a hand-moved clock.

Two backends: ``stack`` is the emulator with its demo seed (faults, webhooks, test clocks);
``shared_stack`` is parametrised over the emulator (a fresh, empty account) and real Stripe
test mode (only with STRIPE_TEST_API_KEY set; skipped otherwise). Tests on ``shared_stack``
build what they need through the Stripe SDK (``Backend``), so one body runs on both."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import stripe
from aiohttp import web

from askvault.billing.v1 import billing_pb2 as pb
from askvault.billing.v1 import billing_pb2_grpc
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from billing_gateway import inbox_store
from billing_gateway.service import BillingGatewayService
from billing_gateway.settings import BillingGatewaySettings
from runtime import errors, interceptors, testing
from runtime.server import RunningService
from smtp_sink import app as smtp_sink_app
from stripe_emulator import app, seed
from stripe_emulator.app import RunningEmulator
from tests import system

STRIPE_LIVE_KEY = os.environ.get("STRIPE_TEST_API_KEY", "")
LIVE_SKIP_REASON = "STRIPE_TEST_API_KEY is not set: the real Stripe test-mode run is skipped"

WORKSPACE = "ws_billing"
_keys = itertools.count()


def key(prefix: str = "k") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


class TestClock:
    """The gateway's clock, moved by hand."""

    __test__ = False

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self._monotonic_offset = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        """The monotonic clock of the breaker and the rate limiter: real time, plus every
        advance (so that waits still pass in real time)."""
        return time.monotonic() + self._monotonic_offset

    def advance(self, delta: timedelta) -> None:
        """Moves the clock (the monotonic one too)."""
        self.now += delta
        self._monotonic_offset += delta.total_seconds()


class RecordingNotifier(notifier_pb2_grpc.NotifierServiceServicer):
    """A real NotifierService that keeps one message per dedup key, as the notifier does."""

    def __init__(self) -> None:
        self.requests: list[notifier_pb2.SendRequest] = []
        self.by_dedup: dict[str, notifier_pb2.SendRequest] = {}
        self.unavailable = False
        # The status the next calls answer with instead of taking the message.
        self.refuse_with: grpc.StatusCode | None = None
        # Seconds the next calls' rate limit says it reopens in (as the notifier's windows).
        self.limited_for: float | None = None

    async def Send(
        self, request: notifier_pb2.SendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> notifier_pb2.SendResponse:
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        self.requests.append(request)
        if self.refuse_with is not None:
            await context.abort(self.refuse_with, "refused for the test")
        if self.limited_for is not None:
            status = interceptors.to_status(
                errors.ServiceError(
                    errors.Kind.RESOURCE_EXHAUSTED,
                    "RATE_LIMITED",
                    "limited for the test",
                    metadata={"retry_after_seconds": str(self.limited_for)},
                ),
                "notifier.askvault.dev",
            )
            await context.abort(status.code, status.details, status.trailing_metadata)
        duplicate = request.dedup_key in self.by_dedup
        self.by_dedup.setdefault(request.dedup_key, request)
        return notifier_pb2.SendResponse(
            message=notifier_pb2.Message(message_id=f"msg_{len(self.by_dedup)}"),
            deduplicated=duplicate,
        )

    def messages(self, template: int) -> list[notifier_pb2.SendRequest]:
        """The distinct messages of a template."""
        return [m for m in self.by_dedup.values() if m.template == template]


@dataclass(frozen=True)
class Customer:
    """A customer a test made through the SDK, subscribed and paid once."""

    email: str
    customer_id: str
    payment_method_id: str
    subscription_id: str
    price_id: str


@dataclass
class Backend:
    """A Stripe the gateway talks to (the emulator, or real Stripe test mode), and an SDK
    client on the same account for the tests' own setup and checks."""

    name: str
    api_key: str
    api_base: str
    sdk: stripe.StripeClient
    http_client: stripe.AIOHTTPClient
    emulator: RunningEmulator | None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created_products: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Whether this is real Stripe."""
        return self.emulator is None

    async def catalog(self) -> dict[str, str]:
        """Fresh products "starter" (19 USD, 2 features) and "growth" (49 USD, 3): tier ->
        monthly price id."""
        prices = {}
        plans = {
            "starter": (1900, ["Email support", "1 workspace"]),
            "growth": (4900, ["Email support", "5 workspaces", "Priority support"]),
        }
        for tier, (amount, features) in plans.items():
            product = await self.sdk.v1.products.create_async(
                {
                    "name": f"{tier.title()} {self.run_id}",
                    "metadata": {"tier": tier, "askvault_test": self.run_id},
                    "marketing_features": [{"name": name} for name in features],
                }
            )
            self.created_products.append(str(product.id))
            price = await self.sdk.v1.prices.create_async(
                {
                    "product": str(product.id),
                    "unit_amount": amount,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
            )
            prices[tier] = str(price.id)
        return prices

    async def customer(self, name: str, price_id: str) -> Customer:
        """A customer with the test Visa as default, subscribed to the price (paid)."""
        email = f"{name}+{self.run_id}@example.com"
        created = await self.sdk.v1.customers.create_async(
            {"email": email, "name": name.title(), "metadata": {"askvault_test": self.run_id}}
        )
        method = await self.sdk.v1.payment_methods.attach_async(
            "pm_card_visa", {"customer": str(created.id)}
        )
        await self.sdk.v1.customers.update_async(
            str(created.id), {"invoice_settings": {"default_payment_method": str(method.id)}}
        )
        subscription = await self.sdk.v1.subscriptions.create_async(
            {"customer": str(created.id), "items": [{"price": price_id}]}
        )
        return Customer(email, str(created.id), str(method.id), str(subscription.id), price_id)

    async def charge(self, customer: Customer, amount: int) -> str:
        """A one-off card charge of the customer; returns the charge id."""
        intent = await self.sdk.v1.payment_intents.create_async(
            {
                "amount": amount,
                "currency": "usd",
                "customer": customer.customer_id,
                "payment_method": customer.payment_method_id,
                # Card only, no redirect methods: confirmable off-session in test mode.
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                "confirm": True,
                "off_session": True,
            }
        )
        return str(intent.latest_charge)

    async def close(self) -> None:
        """Archives what the run created (real Stripe keeps it) and closes the client."""
        if self.live:
            for product_id in self.created_products:
                # Best effort: an unarchived leftover is harmless in test mode.
                with contextlib.suppress(stripe.StripeError):
                    await self.sdk.v1.products.update_async(product_id, {"active": False})
        await self.http_client.close_async()  # type: ignore[no-untyped-call]


def _backend(name: str, emulator: RunningEmulator | None, api_key: str) -> Backend:
    http_client = stripe.AIOHTTPClient()
    api_base = emulator.url if emulator is not None else "https://api.stripe.com"
    sdk = stripe.StripeClient(api_key, base_addresses={"api": api_base}, http_client=http_client)
    return Backend(name, api_key, api_base, sdk, http_client, emulator)


class NotifierGate:
    """A TCP forwarder between the gateway and the notifier that can be shut (every
    connection refused at once, as a notifier that is down) and opened again."""

    def __init__(self, target_port: int) -> None:
        self.opened = False
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Starts listening; the address to give the gateway as its notifier."""
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.opened:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()


@dataclass
class Stack:
    """Everything a billing test talks to."""

    billing: billing_pb2_grpc.BillingGatewayServiceAsyncStub
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    backend: Backend
    demo: dict[str, Any]
    service: BillingGatewayService
    running: RunningService
    settings: BillingGatewaySettings
    clock: TestClock
    notifier: RecordingNotifier
    webhook_url: str
    sink: smtp_sink_app.RunningSink | None
    database_url: str
    hmac_secret: bytes = field(default_factory=lambda: os.urandom(32))
    # In front of the real notifier when the stack was made with a gate.
    notifier_gate: NotifierGate | None = None
    deliveries: list[tuple[bytes, str, grpc.StatusCode]] = field(default_factory=list)

    @property
    def emulator(self) -> RunningEmulator:
        """The emulator (emulator-backed stacks only)."""
        assert self.backend.emulator is not None, "this test needs the emulator"
        return self.backend.emulator

    def customer(self, email: str) -> str:
        """The demo customer id of an email."""
        return str(self.demo["customers"][email]["customer"])

    async def assertion(self, email: str, link: bool = True, customer_id: str = "") -> str:
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
                stripe_customer_id=customer_id or self.customer(email),
                idempotency_key=key("link"),
            ),
            metadata=testing.admin_metadata(),
        )
        return str((await self.identity.VerifyVisitor(request)).identity_assertion)

    async def grant(
        self, assertion: str, action: int, details: policy_pb2.ActionDetails
    ) -> policy_pb2.Grant:
        """A grant from the real policy service (confirmed, within bounds)."""
        decision = await self.policy.Authorize(
            testing.confirmed(
                policy_pb2.AuthorizeRequest(
                    workspace_id=WORKSPACE,
                    identity_assertion=assertion,
                    action=action,  # type: ignore[arg-type]
                    details=details,
                    idempotency_key=key("auth"),
                )
            )
        )
        assert decision.decision == policy_pb2.DECISION_ALLOW, decision
        grant: policy_pb2.Grant = decision.grant
        return grant

    async def retry_payment(
        self, assertion: str, invoice_id: str
    ) -> pb.RetryInvoicePaymentResponse:
        """The visitor's retry of an open invoice's payment, under a grant of its own."""
        grant = await self.grant(
            assertion,
            common_pb2.BILLING_ACTION_RETRY_PAYMENT,
            policy_pb2.ActionDetails(invoice_id=invoice_id),
        )
        response: pb.RetryInvoicePaymentResponse = await self.billing.RetryInvoicePayment(
            pb.RetryInvoicePaymentRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                grant_id=grant.grant_id,
                invoice_id=invoice_id,
                idempotency_key=key("retry"),
            )
        )
        return response

    async def flush_webhooks(self) -> None:
        """Delivers every pending Stripe webhook to the gateway."""
        await self.emulator.dispatcher.flush(10.0)

    async def event_status(self, event_id: str) -> inbox_store.EventStatus | None:
        """The inbox row of an event."""
        async with self.running.pool.acquire() as connection:
            return await inbox_store.get_event_status(connection, WORKSPACE, event_id)

    async def make_events_due(self) -> None:
        """Deferred events become due now (instead of waiting out their backoff)."""
        async with self.running.pool.acquire() as connection:
            await inbox_store.make_events_due(connection, WORKSPACE)

    def fresh_service(self) -> tuple[BillingGatewayService, BillingGatewaySettings]:
        """Another gateway instance on the same database (a restart)."""
        service = BillingGatewayService(
            self.settings, clock=self.clock, monotonic=self.clock.monotonic
        )
        return service, self.settings


def usd(amount: int) -> common_pb2.Money:
    """US cents."""
    return common_pb2.Money(amount_minor=amount, currency="usd")


async def _webhook_receiver(
    deliveries: list[tuple[bytes, str, grpc.StatusCode]],
    target: list[billing_pb2_grpc.BillingGatewayServiceAsyncStub],
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


# The gateway's settings in these tests: workers started by hand, quick breaker and retries.
_BILLING_VALUES: dict[str, Any] = {
    "run_workers": False,
    "breaker_failure_threshold": 3,
    "breaker_cooldown_seconds": 0.5,
    "stripe_retry_backoff_seconds": 0.01,
    "stripe_max_network_retries": 1,
    "stripe_timeout_seconds": 2.0,
}


@contextlib.asynccontextmanager
async def _stack(
    database_url: str,
    backend: Backend,
    demo: dict[str, Any],
    *,
    real_notifier: bool = False,
    notifier_gate: bool = False,
    **billing_values: Any,
) -> AsyncIterator[Stack]:
    """The gateway and its neighbours on the backend (tests/system.py's services, a
    recording notifier in place of the real one unless ``real_notifier``), the account
    connected."""
    secrets = system.Secrets()
    notifier = RecordingNotifier()  # type: ignore[abstract]
    deliveries: list[tuple[bytes, str, grpc.StatusCode]] = []
    stub_box: list[billing_pb2_grpc.BillingGatewayServiceAsyncStub] = []
    async with contextlib.AsyncExitStack() as exits:
        sink: smtp_sink_app.RunningSink | None = None
        gate: NotifierGate | None = None
        if real_notifier:
            sink = await smtp_sink_app.start()
            exits.push_async_callback(sink.close)
            # WhatsApp off; leases short enough for a test to see one run out.
            started = await system.start_notifier(
                exits,
                database_url,
                sink,
                whatsapp_timeout_seconds=2.0,
                http_timeout_seconds=2.0,
                lease_seconds=5.0,
            )
            notifier_target = started.address
            if notifier_gate:
                gate = NotifierGate(int(started.address.rpartition(":")[2]))
                notifier_target = await gate.start()
                exits.push_async_callback(gate.close)
        else:
            notifier_server = grpc.aio.server()
            notifier_pb2_grpc.add_NotifierServiceServicer_to_server(notifier, notifier_server)
            notifier_port = notifier_server.add_insecure_port("127.0.0.1:0")
            await notifier_server.start()
            exits.push_async_callback(notifier_server.stop, 0)
            notifier_target = f"127.0.0.1:{notifier_port}"
        if backend.live:
            # Real Stripe cannot reach this machine: the endpoint is registered (and deleted
            # at the end) but nothing is delivered; webhook tests are emulator-only.
            webhook_url = f"https://askvault-tests.invalid/stripe/{backend.run_id}"
        else:
            receiver, webhook_url = await _webhook_receiver(deliveries, stub_box)
            exits.push_async_callback(receiver.cleanup)
        ident = await system.start_identity(exits, database_url, secrets)
        pol = await system.start_policy(
            exits,
            database_url,
            secrets,
            identity_target=ident.address,
            expiry_interval_seconds=3600.0,
            default_refund_caps="usd:1000000",
        )
        config = await system.billing_settings(
            database_url,
            secrets,
            identity_target=ident.address,
            notifier_target=notifier_target,
            policy_target=pol.address,
            stripe_api_base=backend.api_base,
            **{
                **_BILLING_VALUES,
                # Real Stripe answers slower than the emulator.
                "stripe_timeout_seconds": 20.0 if backend.live else 2.0,
                **billing_values,
            },
        )
        clock = TestClock()
        service = BillingGatewayService(config, clock=clock, monotonic=clock.monotonic)
        running = await system.start_billing(exits, config, service)
        channel = await exits.enter_async_context(grpc.aio.insecure_channel(running.address))
        identity_channel = await exits.enter_async_context(grpc.aio.insecure_channel(ident.address))
        policy_channel = await exits.enter_async_context(grpc.aio.insecure_channel(pol.address))
        billing = billing_pb2_grpc.BillingGatewayServiceStub(channel)
        stub_box.append(billing)
        stack = Stack(
            billing=billing,
            identity=identity_pb2_grpc.IdentityServiceStub(identity_channel),
            policy=policy_pb2_grpc.PolicyServiceStub(policy_channel),
            backend=backend,
            demo=demo,
            service=service,
            running=running,
            settings=config,
            clock=clock,
            notifier=notifier,
            webhook_url=webhook_url,
            sink=sink,
            database_url=database_url,
            deliveries=deliveries,
            notifier_gate=gate,
        )
        endpoint_id = await _prepare(stack)
        if backend.live:
            exits.push_async_callback(_delete_endpoint, backend, endpoint_id)
        yield stack


async def _delete_endpoint(backend: Backend, endpoint_id: str) -> None:
    await backend.sdk.v1.webhook_endpoints.delete_async(endpoint_id)


@contextlib.asynccontextmanager
async def _seeded_emulator(api_key: str = "") -> AsyncIterator[tuple[Backend, dict[str, Any]]]:
    emulator = await app.start()
    demo = seed.seed_demo(emulator.state)
    backend = _backend("emulator", emulator, api_key or seed.DEMO_API_KEY)
    try:
        yield backend, demo
    finally:
        await backend.close()
        await emulator.close()


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[Stack]:
    """The whole neighbourhood of the gateway, connected to the seeded demo account."""
    async with _seeded_emulator() as (backend, demo), _stack(database_url, backend, demo) as s:
        yield s


@pytest.fixture
async def slow_breaker_stack(database_url: str) -> AsyncIterator[Stack]:
    """As ``stack``, with a breaker that stays open a minute unless the clock is moved."""
    async with (
        _seeded_emulator() as (backend, demo),
        _stack(database_url, backend, demo, breaker_cooldown_seconds=60.0) as s,
    ):
        yield s


@pytest.fixture
async def notifier_stack(database_url: str) -> AsyncIterator[Stack]:
    """As ``stack``, with the real notifier service emailing an SMTP sink."""
    async with (
        _seeded_emulator() as (backend, demo),
        _stack(database_url, backend, demo, real_notifier=True) as s,
    ):
        yield s


@pytest.fixture
async def gated_notifier_stack(database_url: str) -> AsyncIterator[Stack]:
    """As ``notifier_stack``, the notifier reached through a gate that starts shut."""
    async with (
        _seeded_emulator() as (backend, demo),
        _stack(
            database_url,
            backend,
            demo,
            real_notifier=True,
            notifier_gate=True,
            confirmation_retry_seconds=0.05,
            confirmation_retry_max_seconds=0.2,
        ) as s,
    ):
        yield s


@pytest.fixture(
    params=[
        "emulator",
        pytest.param(
            "stripe_live",
            marks=[
                pytest.mark.stripe_live,
                pytest.mark.skipif(not STRIPE_LIVE_KEY, reason=LIVE_SKIP_REASON),
            ],
        ),
    ]
)
async def shared_stack(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Stack]:
    """The gateway on each backend, with an EMPTY account (no seed): the emulator with a
    fresh key of its own, or real Stripe test mode with STRIPE_TEST_API_KEY."""
    if request.param == "stripe_live":
        backend = _backend("stripe_live", None, STRIPE_LIVE_KEY)
        try:
            async with _stack(database_url, backend, {}) as s:
                yield s
        finally:
            await backend.close()
        return
    async with (
        _seeded_emulator(f"sk_test_{uuid.uuid4().hex}") as (backend, _),
        _stack(database_url, backend, {}) as s,
    ):
        yield s


async def _prepare(stack: Stack) -> str:
    await stack.identity.AddSecret(
        identity_pb2.AddSecretRequest(
            workspace_id=WORKSPACE,
            key_id="h1",
            secret=stack.hmac_secret,
            idempotency_key=key("secret"),
            purpose=identity_pb2.SECRET_PURPOSE_USER_HASH,
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
    connected = await stack.billing.ConnectAccount(
        pb.ConnectAccountRequest(
            workspace_id=WORKSPACE,
            secret_key=stack.backend.api_key,
            webhook_url=stack.webhook_url,
            idempotency_key=key("connect"),
        ),
        metadata=testing.admin_metadata(),
    )
    return str(connected.webhook_endpoint_id)
