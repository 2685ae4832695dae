"""The outbox's metrics, read from the OpenTelemetry meter after real deliveries: a message
that goes dead is counted, and the outbox's age is the oldest waiting message's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import outbox_metrics
from notifier.tests.conftest import Notifier
from runtime import testing
from smtp_sink.store import Fault

DEAD_LETTERS = "askvault.notifier.dead_letters"
OUTBOX_AGE = "askvault.notifier.outbox.oldest_age"


async def test_a_message_that_goes_dead_is_counted(notifier: Notifier) -> None:
    notifier.sink.store.queue_fault(Fault(550, "5.1.1 no such user", "rcpt"))
    with testing.captured_metrics() as captured:
        sent = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
        await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DEAD)
        delivered = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
        await notifier.wait_status(delivered.message.message_id, pb.MESSAGE_STATUS_SENT)
        assert captured.value(DEAD_LETTERS, channel="email") == 1
        assert captured.value(DEAD_LETTERS, channel="whatsapp") == 0


async def test_the_outbox_age_is_the_oldest_waiting_message_per_channel(
    notifier_factory: Callable[..., Awaitable[Notifier]],
) -> None:
    # No worker: what is sent stays waiting.
    notifier = await notifier_factory(worker_count=0)
    old = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
    await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
    async with notifier.server.pool.acquire() as connection:
        await connection.execute(
            "UPDATE messages SET created_at = now() - interval '1 hour' WHERE message_id = $1",
            old.message.message_id,
        )
    with testing.captured_metrics() as captured:
        await outbox_metrics.refresh(notifier.server.pool)
        assert 3600 <= captured.value(OUTBOX_AGE, channel="email") < 3700
        assert captured.value(OUTBOX_AGE, channel="whatsapp") == 0
        async with notifier.server.pool.acquire() as connection:
            await connection.execute("UPDATE messages SET status = 'sent'")
        await outbox_metrics.refresh(notifier.server.pool)
        assert captured.value(OUTBOX_AGE, channel="email") == 0
