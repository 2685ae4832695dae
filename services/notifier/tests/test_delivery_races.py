"""Races between a delivery and what happens beside it: an opt-out recorded after the claim
and before the WhatsApp call, a provider status that arrives before the send is recorded.
Each test runs its own worker, whose claim or delivery lets the other side in at the worst
moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import message_store
from notifier.delivery import ConsentNow, Deliverer, PartDone
from notifier.tests.conftest import Notifier
from notifier.worker import OutboxWorker
from runtime import database

NUMBER = "+14155550100"
VARIABLES = {"amount": "$49.00", "update_card_url": "https://billing.example.com/card"}


def _recipient(contact_id: str) -> pb.Recipient:
    return pb.Recipient(
        contact_id=contact_id, email="wa@example.com", whatsapp_number=NUMBER, name="Wa"
    )


@contextlib.asynccontextmanager
async def _running(worker: OutboxWorker) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    try:
        yield
    finally:
        stopping.set()
        await task


class _OptOutAfterClaim(OutboxWorker):
    """Records the contact's opt-out once its message is claimed, before delivery starts."""

    def __init__(self, opt_out: Callable[[], Awaitable[None]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._opt_out = opt_out

    async def _claim(self, limit: int) -> list[message_store.ClaimedMessage]:
        claimed = await super()._claim(limit)
        if claimed:
            await self._opt_out()
        return claimed


async def test_an_opt_out_after_the_claim_stops_the_whatsapp_call(
    notifier_factory: Callable[..., Awaitable[Notifier]], database_url: str
) -> None:
    notifier = await notifier_factory(worker_count=0)
    await notifier.consent("ct_race", True)
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient("ct_race")
    )
    assert sent.message.channel == pb.CHANNEL_WHATSAPP

    async def opt_out() -> None:
        await notifier.consent("ct_race", False, source="whatsapp_reply")

    pool = await database.create_pool(database_url, "notifier", min_size=1, max_size=4)
    async with aiohttp.ClientSession() as session:
        worker = _OptOutAfterClaim(
            opt_out,
            pool=pool,
            settings=notifier.settings,
            deliverer=Deliverer(notifier.settings, session),
            worker_id="race",
        )
        try:
            async with _running(worker):
                message = await notifier.wait_for(
                    sent.message.message_id,
                    lambda m: m.status == pb.MESSAGE_STATUS_SENT,
                )
        finally:
            await pool.close()
    # The claim read an opt-in; the call did not go out on it: the message went by email.
    assert notifier.whatsapp.state.messages == []
    assert message.channel == pb.CHANNEL_EMAIL
    assert message.fallback_from == pb.CHANNEL_WHATSAPP


class _WebhookFirst(Deliverer):
    """A provider whose status webhook beats the worker's record of the (first) send."""

    def __init__(self, notifier: Notifier, session: aiohttp.ClientSession, status: str) -> None:
        super().__init__(notifier.settings, session)
        self._notifier = notifier
        self._status = status
        self.applied: list[int] = []

    async def deliver(
        self, claimed: message_store.ClaimedMessage, part_done: PartDone, consent_now: ConsentNow
    ) -> str:
        provider_message_id = await super().deliver(claimed, part_done, consent_now)
        if self.applied:
            return provider_message_id
        report = pb.WhatsAppStatus(
            provider_message_id=provider_message_id, status=self._status, error_code=131026
        )
        report.occurred_at.FromDatetime(datetime.now(UTC))
        response = await self._notifier.stub.IngestWhatsAppStatus(
            pb.IngestWhatsAppStatusRequest(statuses=[report])
        )
        self.applied.append(response.applied)
        return provider_message_id


async def _deliver_with_early_status(
    notifier: Notifier, database_url: str, contact_id: str, status: str
) -> tuple[_WebhookFirst, str]:
    # The emulator's own webhooks are off: only the early one is reported.
    notifier.whatsapp.state.auto_statuses = []
    await notifier.consent(contact_id, True)
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=VARIABLES, recipient=_recipient(contact_id)
    )
    pool = await database.create_pool(database_url, "notifier", min_size=1, max_size=4)
    async with aiohttp.ClientSession() as session:
        deliverer = _WebhookFirst(notifier, session, status)
        worker = OutboxWorker(
            pool=pool, settings=notifier.settings, deliverer=deliverer, worker_id="early"
        )
        try:
            async with _running(worker):
                await notifier.wait_for(
                    sent.message.message_id,
                    lambda m: m.status != pb.MESSAGE_STATUS_QUEUED,
                )
                await notifier.outbox(contact_id)
        finally:
            await pool.close()
    return deliverer, sent.message.message_id


async def test_a_status_before_the_send_is_recorded_is_applied_after_it(
    notifier_factory: Callable[..., Awaitable[Notifier]], database_url: str
) -> None:
    notifier = await notifier_factory(worker_count=0)
    deliverer, message_id = await _deliver_with_early_status(
        notifier, database_url, "ct_early", "delivered"
    )
    # The status found no message yet (the send was not recorded): it was parked...
    assert deliverer.applied == [0]
    # ... and applied the moment the send was recorded.
    message = await notifier.message(message_id)
    assert message.status == pb.MESSAGE_STATUS_DELIVERED
    assert message.HasField("delivered_at")
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT count(*) FROM notifier.parked_whatsapp_statuses") == 0
    finally:
        await admin.close()


async def test_an_early_failure_is_applied_too(
    notifier_factory: Callable[..., Awaitable[Notifier]], database_url: str
) -> None:
    notifier = await notifier_factory(worker_count=0)
    deliverer, message_id = await _deliver_with_early_status(
        notifier, database_url, "ct_early_fail", "failed"
    )
    assert deliverer.applied == [0]
    # WhatsApp 131026 (not a WhatsApp user) after acceptance: the message falls back to
    # email instead of staying "sent" forever.
    message = await notifier.wait_for(
        message_id,
        lambda m: m.channel == pb.CHANNEL_EMAIL and m.status == pb.MESSAGE_STATUS_SENT,
    )
    assert message.fallback_from == pb.CHANNEL_WHATSAPP
