"""Notifier: messages through Send -> outbox -> 2 workers -> SMTP sink, at saturation (a
burst of 1,000 sent by 32 concurrent callers) and at a fixed rate of half the saturation
measured in the same run. Latency runs from when a message was due to be sent (before the
client waits for one of its 32 call slots) to the sink's receipt. Baseline in the same run:
bare aiosmtplib sends to the same sink over 8 kept-open connections, as the workers keep
theirs (SMTP_IDLE_CONNECTIONS=8), 32 concurrent senders: the delivery side's ceiling.

The client, the notifier (API and its workers) and the sink share one process, the baseline's
client and sink too. Changed from the defaults: the per-contact and per-workspace hourly send
limits are lifted and the poll interval is 0.05 s (the default 0.5 s)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.message import EmailMessage

import grpc

from askvault.notifier.v1 import notifier_pb2 as pb
from askvault.notifier.v1 import notifier_pb2_grpc
from bench import _bare, _harness
from bench._harness import Figure, Goal, Run
from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from runtime import database, testing
from smtp_sink import app as smtp_sink_app

SATURATION_MESSAGES = 1000
SEND_CONCURRENCY = 32
BASELINE_SECONDS = 5.0
SETTLE_SECONDS = 60.0
DOMAIN = "bench.notifier"


async def _bare_smtp(sink: smtp_sink_app.RunningSink) -> _harness.Stats:
    pool = _bare.SmtpPool(sink.host, sink.smtp_port, size=8)

    async def send() -> None:
        mail = EmailMessage()
        mail["From"] = "bench@example.com"
        mail["To"] = "someone@example.com"
        mail["Subject"] = "baseline"
        mail.set_content("text")
        mail.add_alternative("<p>html</p>", subtype="html")
        await pool.send(mail)

    try:
        return await _harness.closed_loop(send, SEND_CONCURRENCY, BASELINE_SECONDS)
    finally:
        await pool.close()


async def _through_outbox(
    stub: notifier_pb2_grpc.NotifierServiceAsyncStub,
    sink: smtp_sink_app.RunningSink,
    prefix: str,
    count: int,
    rate: float | None,
) -> _harness.Stats:
    """Sends ``count`` messages (all at once, or due at ``rate``/s) with at most 32 calls in
    flight, waits for them at the sink; per message, from when it was due to its receipt."""
    sink.store.clear()
    due_at: dict[str, float] = {}
    errors: list[str] = []
    slots = asyncio.Semaphore(SEND_CONCURRENCY)

    async def send(index: int, due: float) -> None:
        async with slots:  # the clock started at ``due``, before waiting for a slot
            try:
                response = await stub.Send(
                    pb.SendRequest(
                        workspace_id="ws_bench",
                        recipient=pb.Recipient(
                            contact_id=f"ct_{index % 500}", email=f"c{index % 500}@example.com"
                        ),
                        template=pb.TEMPLATE_REFUND_CONFIRMATION,
                        variables={"amount": "$12.00", "reference": f"re_{index}"},
                        dedup_key=f"{prefix}-{index}",
                    ),
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                return
            due_at[f"<{response.message.message_id}@{DOMAIN}>"] = due

    began = time.time()
    tasks = []
    for index in range(count):
        due = began + (index / rate if rate else 0.0)
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index, due)))
    await asyncio.gather(*tasks)
    with contextlib.suppress(TimeoutError):
        await sink.store.wait_for(len(due_at), SETTLE_SECONDS)
    seconds = time.time() - began
    first: dict[str, float] = {}
    for mail in sink.store.select():
        first.setdefault(mail.message_id, mail.received_at)
    latencies = tuple(first[key] - due_at[key] for key in due_at if key in first)
    lost = len(due_at) - len(latencies)
    return _harness.Stats(len(latencies), len(errors) + lost, seconds, latencies, tuple(errors))


async def run() -> Run:
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
                rate = _harness.half_rate(saturated)
                steady = await _through_outbox(
                    stub, sink, "half", int(rate * _harness.seconds_for_samples(rate)), rate
                )
                rss = _harness.rss_mb()
    finally:
        await sink.close()
    figures = [
        Figure(
            "saturation_per_second",
            f"messages/s delivered, burst of {SATURATION_MESSAGES} (bare: SMTP, 8 connections)",
            round(saturated.per_second, 1),
            "/s",
            baseline=round(baseline.per_second, 1),
        ),
        Figure(
            "saturation_failed",
            "messages failed or lost in the burst",
            saturated.failed,
            "",
            goal=Goal("0", at_most=0),
        ),
        Figure(
            "saturation_success",
            "burst messages delivered, share",
            round(saturated.success_share, 4),
        ),
        Figure("half_rate", "half the measured saturation (fixed rate)", rate, "/s"),
        _harness.tail_figure("half_tail", "due -> sink at half the saturation", steady),
        Figure(
            "half_failed",
            "messages failed or lost at half the saturation",
            steady.failed,
            "",
            goal=Goal("0", at_most=0),
        ),
        Figure("rss", "RSS of client + notifier + sink (one process)", rss, "MB"),
    ]
    details = {
        "saturation": saturated.as_dict(),
        "half_rate": {"rate": rate, **steady.as_dict()},
        "baseline_bare_smtp_8_connections": baseline.as_dict(),
        "rss_mb_client_notifier_and_sink": rss,
    }
    return Run(figures, details)
