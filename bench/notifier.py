"""Notifier: messages per second through the outbox to the SMTP sink, and the latency from
Send to the sink receiving the message (p50/p99), at saturation and at a fixed rate below
it. Baseline in the same run: bare aiosmtplib sends to the same sink (one connection per
message, as the workers do), which is the ceiling of the delivery side alone.

The client, the notifier (API and two outbox workers) and the sink share one process."""

from __future__ import annotations

import asyncio
import statistics
import time
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import grpc

from askvault.notifier.v1 import notifier_pb2 as pb
from askvault.notifier.v1 import notifier_pb2_grpc
from bench import _harness
from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from runtime import database, testing
from smtp_sink import app as smtp_sink_app

SATURATION_MESSAGES = 2000
SEND_CONCURRENCY = 32
FIXED_RATE = 100.0
FIXED_SECONDS = 5.0
BASELINE_SECONDS = 5.0
DOMAIN = "bench.notifier"


async def _bare_smtp(sink: smtp_sink_app.RunningSink) -> _harness.Stats:
    async def send() -> None:
        mail = EmailMessage()
        mail["From"] = "bench@example.com"
        mail["To"] = "someone@example.com"
        mail["Subject"] = "baseline"
        mail.set_content("text")
        mail.add_alternative("<p>html</p>", subtype="html")
        await aiosmtplib.send(mail, hostname=sink.host, port=sink.smtp_port, start_tls=False)

    return await _harness.closed_loop(send, SEND_CONCURRENCY, BASELINE_SECONDS)


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    if not ordered:
        return 0.0, 0.0
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _through_outbox(
    stub: notifier_pb2_grpc.NotifierServiceStub,
    sink: smtp_sink_app.RunningSink,
    prefix: str,
    count: int,
    rate: float | None,
) -> dict[str, float | int]:
    """Sends ``count`` messages (as fast as allowed, or at ``rate``/s) and waits for them
    all at the sink; latency is Send start to the sink's receipt, per message."""
    sink.store.clear()
    started_at: dict[str, float] = {}
    limiter = asyncio.Semaphore(SEND_CONCURRENCY)

    async def send(index: int) -> None:
        async with limiter:
            began = time.time()
            response = await stub.Send(
                pb.SendRequest(
                    workspace_id="ws_bench",
                    recipient=pb.Recipient(
                        contact_id=f"ct_{index % 500}", email=f"c{index % 500}@example.com"
                    ),
                    template=pb.TEMPLATE_REFUND_CONFIRMATION,
                    variables={"amount": "$12.00", "reference": f"re_{index}"},
                    dedup_key=f"{prefix}-{index}",
                )
            )
            started_at[f"<{response.message.message_id}@{DOMAIN}>"] = began

    began = time.perf_counter()
    tasks = []
    for index in range(count):
        if rate is not None:
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index)))
    await asyncio.gather(*tasks)
    received = await sink.store.wait_for(count, 120.0)
    seconds = time.perf_counter() - began
    first_receipt: dict[str, float] = {}
    for mail in received:
        first_receipt.setdefault(mail.message_id, mail.received_at)
    latencies = [first_receipt[key] - started_at[key] for key in started_at if key in first_receipt]
    p50, p99 = _percentiles(latencies)
    return {
        f"{prefix}_messages": count,
        f"{prefix}_per_second": round(count / seconds, 1),
        f"{prefix}_send_to_sink_p50_ms": round(p50, 2),
        f"{prefix}_send_to_sink_p99_ms": round(p99, 2),
    }


async def run() -> dict[str, Any]:
    sink = await smtp_sink_app.start()
    try:
        baseline = await _bare_smtp(sink)
        async with _harness.fresh_database() as database_url:
            await database.migrate_url(database_url, "notifier", "notifier.migrations")
            settings = testing.make_settings(
                NotifierSettings,
                database_url,
                smtp_host=sink.host,
                smtp_port=sink.smtp_port,
                message_id_domain=DOMAIN,
                worker_count=2,
                worker_concurrency=16,
                poll_interval_seconds=0.05,
                default_contact_hourly_limit=100_000,
                default_workspace_hourly_limit=1_000_000,
                database_pool_max_size=20,
                migrate_on_start=False,
            )
            async with (
                testing.running(NotifierService(settings), settings) as running,
                grpc.aio.insecure_channel(running.address) as channel,
            ):
                stub = notifier_pb2_grpc.NotifierServiceStub(channel)
                await _through_outbox(stub, sink, "warmup", 100, None)
                saturated = await _through_outbox(
                    stub, sink, "saturation", SATURATION_MESSAGES, None
                )
                fixed = await _through_outbox(
                    stub, sink, "fixed_rate", int(FIXED_RATE * FIXED_SECONDS), FIXED_RATE
                )
                rss = _harness.rss_mb()
    finally:
        await sink.close()
    return {
        "scenario": (
            "Send -> outbox -> 2 workers -> SMTP sink (client, notifier and sink in one"
            f" process); fixed rate {FIXED_RATE:.0f}/s"
        ),
        **saturated,
        **fixed,
        **baseline.as_dict("baseline_bare_smtp_"),
        "ratio_to_baseline": _harness.ratio(
            float(saturated["saturation_per_second"]), baseline.per_second
        ),
        "rss_mb_client_notifier_and_sink": rss,
    }
