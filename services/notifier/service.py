"""Notifier as the runtime starts it: the servicer on the server, the outbox workers beside."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import grpc

from askvault.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from notifier import outbox_metrics
from notifier.delivery import Deliverer
from notifier.grpc_api import NotifierServicer
from notifier.settings import NotifierSettings
from notifier.worker import OutboxWorker, Waker
from runtime import tasks
from runtime.periodic import Periodic
from runtime.server import Resources
from runtime.service_auth import ADMIN, EVERY_RPC

logger = logging.getLogger(__name__)


class NotifierService:
    """The notifier service for the runtime."""

    name = "notifier"
    migrations_package = "notifier.migrations"
    error_domain = "notifier.askvault.dev"
    service_names = (notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name,)
    # Who may call which RPC when service credentials are on (SERVICE_PUBLIC_KEYS).
    allowed_callers = {
        EVERY_RPC: frozenset({"edge", "billing_gateway"}),
        "UpdateWorkspaceSettings": frozenset({ADMIN}),
        "GetWorkspaceSettings": frozenset({ADMIN}),
        "ResendMessage": frozenset({ADMIN}),
        "SetHelpdeskWebhookSecret": frozenset({ADMIN}),
        # A contact's messages for the services; the workspace's (dead letters) for admins.
        "ListMessages": frozenset({"edge", "billing_gateway", ADMIN}),
    }

    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._deliverer: Deliverer | None = None
        self._outbox_age: Periodic | None = None
        self.waker = Waker()

    async def start(self, server: grpc.aio.Server, resources: Resources) -> None:
        servicer = NotifierServicer(
            pool=resources.pool, settings=self._settings, on_queued=self.waker.notify
        )
        notifier_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)
        self._stopping.clear()
        self._session = aiohttp.ClientSession()
        deliverer = Deliverer(self._settings, self._session)
        self._deliverer = deliverer
        for index in range(self._settings.worker_count):
            worker = OutboxWorker(
                pool=resources.pool,
                settings=self._settings,
                deliverer=deliverer,
                worker_id=f"{self.name}-{id(self):x}-{index}",
                waker=self.waker,
            )
            self._workers.append(
                asyncio.create_task(
                    worker.run(self._stopping, housekeeping=index == 0),
                    name=f"outbox-worker-{index}",
                )
            )
        self._outbox_age = outbox_metrics.refresher(resources.pool)
        self._outbox_age.start()

    async def stop(self) -> None:
        """Stops claiming, lets in-flight deliveries finish (bounded by their deadline)."""
        self._stopping.set()
        # A worker ends once its deliveries in flight have (each bounded by its deadline).
        await tasks.finish_all(self._workers, self._settings.delivery_deadline_seconds + 5.0)
        self._workers.clear()
        if self._outbox_age is not None:
            await self._outbox_age.stop()
            self._outbox_age = None
        if self._deliverer is not None:
            await tasks.bounded(self._deliverer.close(), tasks.STOP_STEP_SECONDS, "providers")
            self._deliverer = None
        if self._session is not None:
            await tasks.bounded(self._session.close(), tasks.STOP_STEP_SECONDS, "http session")
            self._session = None
