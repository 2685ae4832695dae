"""1,000 messages while outbox workers are killed at random mid-delivery: none is lost, and
each arrives at the sink once per message id.

"Exactly once" here means once per deterministic Message-ID at the sink. A worker killed
after the SMTP server accepted a message but before ``mark_sent`` committed makes the
message go out again when its lease ends, with the same Message-ID; the test counts such
copies (bounded by what the killed workers held) and requires every id to be there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.delivery import Deliverer
from notifier.tests.conftest import MESSAGE_ID_DOMAIN, WORKSPACE, Notifier
from notifier.worker import OutboxWorker
from runtime import database

MESSAGES = 1000
KILLS = 3


@dataclass
class LiveWorker:
    """A worker with its own pool, as a separate process would have."""

    worker: OutboxWorker
    pool: asyncpg.Pool
    task: asyncio.Task[None]
    stopping: asyncio.Event


async def test_killed_workers_lose_nothing(
    notifier_factory: Callable[..., Awaitable[Notifier]], database_url: str
) -> None:
    # The server's own workers are off; the test runs (and kills) its own. A short lease
    # brings the messages of a killed worker back quickly.
    notifier = await notifier_factory(
        worker_count=0,
        # A slow but successful answer must not time out and be sent again (only kills may
        # cause copies): provider timeouts of 2.5 s, under the 3 s delivery deadline.
        lease_seconds=4.0,
        smtp_timeout_seconds=2.5,
        whatsapp_timeout_seconds=2.5,
        http_timeout_seconds=2.5,
        worker_concurrency=8,
        default_contact_hourly_limit=MESSAGES,
        default_workspace_hourly_limit=MESSAGES * 2,
    )
    settings = notifier.settings
    # A slightly slow sink keeps deliveries in flight when the kills come.
    notifier.sink.store.delay_seconds = 0.003
    rng = random.Random(20261127)
    session = aiohttp.ClientSession()
    deliverer = Deliverer(settings, session)
    live: list[LiveWorker] = []
    generation = 0

    async def spawn() -> None:
        nonlocal generation
        generation += 1
        pool = await database.create_pool(database_url, "notifier", min_size=1, max_size=4)
        worker = OutboxWorker(
            pool=pool, settings=settings, deliverer=deliverer, worker_id=f"w{generation}"
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        live.append(LiveWorker(worker, pool, task, stopping))

    for _ in range(3):
        await spawn()

    sends = asyncio.Semaphore(32)

    async def send(index: int) -> str:
        async with sends:
            response = await notifier.send(
                template=pb.TEMPLATE_CANCELLATION_UNDONE,
                recipient=pb.Recipient(
                    contact_id=f"ct_{index % 100}", email=f"c{index % 100}@example.com"
                ),
                dedup_key=f"crash-{index}",
            )
            return response.message.message_id

    async def send_all() -> list[str]:
        return list(await asyncio.gather(*(send(i) for i in range(MESSAGES))))

    try:
        message_ids, in_flight_at_kills = await _run(send_all, live, spawn, rng, database_url)
    finally:
        for running in live:
            running.stopping.set()
        await asyncio.gather(*(r.task for r in live), return_exceptions=True)
        for running in live:
            await running.pool.close()
        await session.close()
    expected = {f"<{message_id}@{MESSAGE_ID_DOMAIN}>" for message_id in message_ids}
    received = [mail.message_id for mail in notifier.sink.store.messages]
    assert set(received) == expected
    print(
        f"crash test: {len(received)} received, {len(expected)} distinct,"
        f" {in_flight_at_kills} deliveries interrupted"
    )
    # Only a delivery cut between the sink's acceptance and mark_sent can be repeated.
    assert len(received) - len(expected) <= in_flight_at_kills
    statuses = await notifier.stub.ListMessages(
        pb.ListMessagesRequest(workspace_id=WORKSPACE, contact_id="ct_0", page_size=500)
    )
    assert {m.status for m in statuses.messages} == {pb.MESSAGE_STATUS_SENT}
    assert len(statuses.messages) == MESSAGES // 100


async def _run(
    send_all: Callable[[], Coroutine[Any, Any, list[str]]],
    live: list[LiveWorker],
    spawn: Callable[[], Awaitable[None]],
    rng: random.Random,
    database_url: str,
) -> tuple[list[str], int]:
    """Sends everything while killing workers; once all are sent, returns the message ids
    and how many deliveries the kills interrupted."""
    sending = asyncio.create_task(send_all())

    in_flight_at_kills = 0
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        # Kill one that is busy, so that the kill interrupts deliveries.
        for _ in range(200):
            busy = [w for w in live if w.worker.in_flight]
            if busy:
                break
            await asyncio.sleep(0.005)
        victim = rng.choice(busy or live)
        in_flight_at_kills += victim.worker.in_flight
        victim.worker.kill()
        victim.task.cancel()
        victim.pool.terminate()
        live.remove(victim)
        await spawn()

    message_ids = await sending
    assert len(set(message_ids)) == MESSAGES

    admin = await asyncpg.connect(database_url)
    try:
        for _ in range(600):
            pending = await admin.fetchval(
                "SELECT count(*) FROM notifier.messages WHERE status <> 'sent'"
            )
            if pending == 0:
                break
            await asyncio.sleep(0.05)
        assert pending == 0
        retried = await admin.fetchval("SELECT count(*) FROM notifier.messages WHERE attempts > 1")
    finally:
        await admin.close()
    # The kills did interrupt deliveries, and the leases brought those messages back.
    assert in_flight_at_kills > 0
    assert retried >= 1
    return list(message_ids), in_flight_at_kills
