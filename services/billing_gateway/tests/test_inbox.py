"""The webhook inbox under concurrency and crashes: a burst of failed-payment events, several
workers claiming batches at once, and a worker killed in the middle of a batch. Emails are
counted where they arrive: the SMTP sink behind the real notifier."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import inbox_store
from billing_gateway.domain import signatures
from billing_gateway.event_burst import Burst
from billing_gateway.inbox import Effects, InboxWorker
from billing_gateway.tests.conftest import WORKSPACE, Stack
from runtime import database

CAROL = "carol@example.com"


class _Counting:
    """The real effects, counting how often each event is applied; optionally stopping
    (forever) at the n-th event it is given, after applying the ones before it."""

    def __init__(self, inner: Effects, stop_at: int = 0) -> None:
        self.inner = inner
        self.applied: collections.Counter[str] = collections.Counter()
        self.stop_at = stop_at
        self.stopped = asyncio.Event()

    async def apply(self, burst: Burst, event: inbox_store.StoredEvent, data: Any) -> list[str]:
        if self.stop_at and sum(self.applied.values()) + 1 == self.stop_at:
            self.stopped.set()
            await asyncio.Event().wait()  # the worker dies here
        self.applied[event.event_id] += 1
        return await self.inner.apply(burst, event, data)


def _secret(stack: Stack) -> str:
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return str(next(iter(account.table("webhook_secret").values()))["secret"])


async def _failed_invoices(stack: Stack, count: int) -> list[dict[str, Any]]:
    """Open invoices of Carol's at Stripe (each has its hosted page)."""
    customer = stack.customer(CAROL)
    invoices = []
    for _ in range(count):
        draft = await stack.backend.sdk.v1.invoices.create_async(
            {"customer": customer, "collection_method": "send_invoice"}
        )
        final = await stack.backend.sdk.v1.invoices.finalize_invoice_async(str(draft.id))
        invoices.append(final.to_dict())
    return invoices


async def _ingest_failures(stack: Stack, invoices: list[dict[str, Any]], tag: str) -> list[str]:
    """Two invoice.payment_failed events per invoice (two attempts), each delivered twice."""
    event_ids = []
    for number, invoice in enumerate(invoices):
        for attempt in (1, 2):
            event = {
                "id": f"evt_{tag}_{number}_{attempt}",
                "object": "event",
                "type": "invoice.payment_failed",
                "created": int(time.time()),
                "data": {"object": {**invoice, "attempt_count": attempt}},
            }
            payload = json.dumps(event).encode()
            for _ in range(2):
                await stack.billing.IngestStripeEvent(
                    pb.IngestStripeEventRequest(
                        workspace_id=WORKSPACE,
                        payload=payload,
                        signature_header=signatures.sign(payload, _secret(stack), int(time.time())),
                    )
                )
            event_ids.append(str(event["id"]))
    return event_ids


async def _emails_per_invoice(stack: Stack, invoices: list[dict[str, Any]]) -> list[int]:
    """How many emails the sink holds for each invoice (by its hosted page's link), once at
    least one arrived for every invoice."""
    assert stack.sink is not None
    links = [str(invoice["hosted_invoice_url"]) for invoice in invoices]
    async with asyncio.timeout(30):
        while True:
            mails = stack.sink.store.select(to=CAROL)
            counts = [sum(link in mail.text for mail in mails) for link in links]
            if all(counts):
                return counts
            await asyncio.sleep(0.1)


async def _case_entries(stack: Stack, event_ids: list[str]) -> collections.Counter[str]:
    """Timeline entries per kind written by these events."""
    async with stack.running.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT kind FROM recovery_events WHERE workspace_id = $1 AND source_id = ANY($2)",
            WORKSPACE,
            event_ids,
        )
    return collections.Counter(str(row["kind"]) for row in rows)


async def test_concurrent_workers_process_a_burst_exactly_once(notifier_stack: Stack) -> None:
    stack = notifier_stack
    await stack.assertion(CAROL)
    await stack.service.events.drain()
    invoices = await _failed_invoices(stack, 12)
    event_ids = await _ingest_failures(stack, invoices, "burst")
    counting = _Counting(stack.service.events.effects)
    # Six workers (as across replicas: each its own claims), small batches so they interleave,
    # some applying the events of a batch at once.
    workers = [
        InboxWorker(stack.running.pool, counting, stack.clock, size, concurrency)
        for size, concurrency in ((1, 1), (2, 2), (3, 1), (4, 4), (5, 1), (7, 3))
    ]
    await asyncio.gather(*(worker.drain() for worker in workers))

    assert all(counting.applied[event_id] == 1 for event_id in event_ids), counting.applied
    for event_id in event_ids:
        status = await stack.event_status(event_id)
        assert status is not None and status.processed_at is not None and status.attempts == 1
    # One email per failed invoice at the SMTP sink, however many events and deliveries.
    assert await _emails_per_invoice(stack, invoices) == [1] * len(invoices)
    await asyncio.gather(*(worker.drain() for worker in workers))
    assert sum(counting.applied[event_id] for event_id in event_ids) == len(event_ids)
    entries = await _case_entries(stack, event_ids)
    assert entries == {"payment_failed": len(event_ids), "message_sent": len(event_ids)}


async def test_worker_killed_mid_batch_loses_nothing(notifier_stack: Stack) -> None:
    stack = notifier_stack
    await stack.assertion(CAROL)
    await stack.service.events.drain()
    invoices = await _failed_invoices(stack, 4)
    event_ids = await _ingest_failures(stack, invoices, "killed")
    # The doomed worker applies five events of its batch of eight (their emails go out),
    # then dies: its connection is cut as a dying process's would be, nothing committed.
    doomed = _Counting(stack.service.events.effects, stop_at=6)
    own_pool = await database.create_pool(
        stack.settings.database_url.get_secret_value(), "billing_gateway", min_size=1, max_size=1
    )
    worker = InboxWorker(own_pool, doomed, stack.clock, batch_size=8)
    task = asyncio.create_task(worker.drain())
    await doomed.stopped.wait()
    own_pool.terminate()  # its connection cut mid-transaction, as a killed process's is
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sum(doomed.applied.values()) == 5

    statuses = [await stack.event_status(event_id) for event_id in event_ids]
    assert all(s is not None and s.processed_at is None and s.attempts == 0 for s in statuses)

    survivor = _Counting(stack.service.events.effects)
    survivors = [
        InboxWorker(stack.running.pool, survivor, stack.clock, batch_size=3) for _ in range(2)
    ]
    await asyncio.gather(*(w.drain() for w in survivors))
    assert all(survivor.applied[event_id] == 1 for event_id in event_ids)
    for event_id in event_ids:
        status = await stack.event_status(event_id)
        assert status is not None and status.processed_at is not None and status.attempts == 1
    # The emails the dead worker already had sent are not sent again.
    assert await _emails_per_invoice(stack, invoices) == [1] * len(invoices)
    entries = await _case_entries(stack, event_ids)
    assert entries == {"payment_failed": len(event_ids), "message_sent": len(event_ids)}
