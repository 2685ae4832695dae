"""The billing gateway as the runtime starts it: Stripe, peers, ledger, servicer, workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from askvault.billing.v1 import billing_pb2, billing_pb2_grpc
from billing_gateway import event_effects, inbox, webhooks
from billing_gateway.accounts import AccountDirectory
from billing_gateway.confirmation_outbox import ConfirmationOutbox
from billing_gateway.grpc_api import BillingGatewayServicer
from billing_gateway.ledger import Clock, Ledger
from billing_gateway.mirror import Mirror
from billing_gateway.mirror_backfill import MirrorBackfill
from billing_gateway.mirror_catch_up import MirrorCatchUp
from billing_gateway.notices import Notices
from billing_gateway.peers import Peers
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeGateway
from runtime import tasks
from runtime.periodic import Periodic, Schedule
from runtime.secretbox import SecretBox
from runtime.server import Resources
from runtime.service_auth import ADMIN, EVERY_RPC

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BillingGatewayService:
    """The billing gateway for the runtime."""

    name = "billing_gateway"
    migrations_package = "billing_gateway.migrations"
    error_domain = "billing.askvault.dev"
    service_names = (billing_pb2.DESCRIPTOR.services_by_name["BillingGatewayService"].full_name,)
    # Who may call which RPC when service credentials are on (SERVICE_PUBLIC_KEYS): only the
    # edge, which also hands in Stripe's webhooks.
    allowed_callers = {
        EVERY_RPC: frozenset({"edge"}),
        "ConnectAccount": frozenset({ADMIN}),
        "CheckWebhookSetup": frozenset({ADMIN}),
        "RetireWebhookSecret": frozenset({ADMIN}),
        "ListRecoveryCases": frozenset({ADMIN}),
        "GetRecoveryStats": frozenset({ADMIN}),
        "GetMirrorStatus": frozenset({ADMIN}),
        "UpdateMirrorSettings": frozenset({ADMIN}),
        "CarryOutEscalation": frozenset({ADMIN}),
        "DeclineEscalation": frozenset({ADMIN}),
    }

    def __init__(
        self,
        settings: BillingGatewaySettings,
        clock: Clock = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._secret_box = SecretBox(settings.secrets_encryption_keys.get_secret_value())
        # The breaker's and the rate limiter's clock (tests move it by hand).
        self.gateway = StripeGateway(settings, monotonic)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._peers: Peers | None = None
        self._ledger: Ledger | None = None
        self._events: inbox.InboxWorker | None = None
        self._mirror: Mirror | None = None
        self._backfill: MirrorBackfill | None = None
        self._catch_up: MirrorCatchUp | None = None
        self._confirmations: ConfirmationOutbox | None = None

    @property
    def ledger(self) -> Ledger:
        """The ledger (started services only)."""
        assert self._ledger is not None
        return self._ledger

    @property
    def peers(self) -> Peers:
        """The stubs of identity, policy and the notifier (started services only)."""
        assert self._peers is not None
        return self._peers

    @property
    def mirror(self) -> Mirror:
        """The mirror of Stripe (started services only)."""
        assert self._mirror is not None
        return self._mirror

    @property
    def backfill(self) -> MirrorBackfill:
        """The mirror's backfill of newly connected accounts (started services only)."""
        assert self._backfill is not None
        return self._backfill

    @property
    def catch_up(self) -> MirrorCatchUp:
        """The mirror's catch-up with Stripe's events list (started services only)."""
        assert self._catch_up is not None
        return self._catch_up

    @property
    def confirmations(self) -> ConfirmationOutbox:
        """The outbox of confirmation emails (started services only)."""
        assert self._confirmations is not None
        return self._confirmations

    @property
    def events(self) -> inbox.InboxWorker:
        """The webhook worker (started services only)."""
        assert self._events is not None
        return self._events

    async def start(self, server: grpc.aio.Server, resources: Resources) -> None:
        settings = self._settings
        pool = resources.pool
        self._peers = Peers(
            settings.identity_target, settings.policy_target, settings.notifier_target
        )
        accounts = AccountDirectory(pool, self._secret_box, self._clock)
        self._mirror = Mirror(pool, self.gateway, accounts, settings, self._clock)
        self._backfill = MirrorBackfill(pool, self.gateway, accounts, settings, self._mirror)
        self._catch_up = MirrorCatchUp(pool, self.gateway, accounts, settings)
        self._ledger = Ledger(pool, self.gateway, self._peers, accounts, self._clock, self._mirror)
        self._events = inbox.InboxWorker(
            pool,
            event_effects.EventEffects(
                pool,
                self.gateway,
                self._peers,
                accounts,
                self._mirror,
                recipients_cache_seconds=settings.webhook_recipients_cache_seconds,
                monotonic=self._monotonic,
            ),
            self._clock,
            settings.webhook_batch_size,
            settings.webhook_batch_concurrency,
        )
        self._confirmations = ConfirmationOutbox(
            pool,
            Notices(self._peers, accounts, self.gateway),
            settings.confirmation_retry_seconds,
            settings.confirmation_retry_max_seconds,
        )
        servicer = BillingGatewayServicer(
            pool=pool,
            settings=settings,
            secret_box=self._secret_box,
            gateway=self.gateway,
            peers=self._peers,
            accounts=accounts,
            ledger=self._ledger,
            mirror=self._mirror,
            confirmations=self._confirmations,
            ingestion=webhooks.Ingestion(
                pool,
                accounts,
                settings.webhook_tolerance_seconds,
                on_stored=self._events.wake,
            ),
            clock=self._clock,
        )
        billing_pb2_grpc.add_BillingGatewayServiceServicer_to_server(servicer, server)
        if settings.run_workers:
            self._start_workers()

    def _start_workers(self) -> None:
        settings = self._settings
        ledger, events = self.ledger, self.events
        confirmations = self.confirmations

        async def reconcile() -> None:
            # Only operations older than the longest a Stripe write can take are settled,
            # at start too: a replica starting during a rolling update must leave the writes
            # other live replicas are still making to them (the settings check the bound).
            await ledger.reconcile(settings.reconcile_after_seconds)

        self._tasks.append(
            asyncio.create_task(
                Periodic("reconcile", reconcile, Schedule(settings.reconcile_interval_seconds)).run(
                    self._stop
                ),
                name="billing-reconcile",
            )
        )
        self._tasks.append(
            asyncio.create_task(
                Periodic(
                    "cancellations",
                    ledger.run_due_cancellations,
                    Schedule(settings.scheduler_poll_seconds),
                ).run(self._stop),
                name="billing-cancellations",
            )
        )
        self._tasks.append(
            asyncio.create_task(
                Periodic(
                    "confirmations",
                    confirmations.retry_due,
                    Schedule(settings.confirmation_poll_seconds),
                ).run(self._stop),
                name="billing-confirmations",
            )
        )
        self._tasks.append(
            asyncio.create_task(self.backfill.run(self._stop), name="billing-mirror-backfill")
        )
        self._tasks.append(
            asyncio.create_task(
                self.catch_up.run(self._stop, settings.scheduler_poll_seconds),
                name="billing-mirror-catch-up",
            )
        )
        for index in range(settings.webhook_workers):
            self._tasks.append(
                asyncio.create_task(
                    events.run(self._stop, settings.webhook_poll_seconds),
                    name=f"billing-webhooks-{index}",
                )
            )

    async def stop(self) -> None:
        """Stops the workers (a claimed row is released by its transaction's end), then closes
        the channels and Stripe's HTTP session; each wait is bounded."""
        self._stop.set()
        await tasks.finish_all(self._tasks)
        self._tasks.clear()
        if self._peers is not None:
            await tasks.bounded(self._peers.close(), tasks.STOP_STEP_SECONDS, "billing channels")
        await tasks.bounded(self.gateway.close(), tasks.STOP_STEP_SECONDS, "stripe client")
