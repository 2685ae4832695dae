"""Failed-payment webhooks into the edge until the customer's email reaches the SMTP sink,
every service its own process (`python -m <service>` as `make run` starts them): signed
invoice.payment_failed events at a fixed 100 events/s for 5 s, then until every email
arrived (or 30 s passed). Each event is for its own real invoice, created (and finalized)
at the Stripe emulator beforehand with the emulator's webhooks paused, because the gateway
reads the invoice from Stripe before it sends anything (one Stripe request per event).
Lost = events acknowledged with no email; duplicates = emails beyond one per event.
Beside it in the same run: bare SMTP sends to the same sink at the same rate over 8
kept-open connections (as the notifier's workers keep SMTP_IDLE_CONNECTIONS=8), and the peak
RSS of each service process. Changed from the defaults: the billing gateway's own
Stripe limiter (STRIPE_RATE_LIMIT_TEST, 25 requests/s) and the notifier's per-contact and
per-workspace hourly send limits are lifted, because every event is for one demo customer
(the Stripe emulator itself has no rate limit)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
from email.message import EmailMessage
from typing import Any

import aiohttp

from bench import _bare, _harness, _processes
from bench._chat import Client
from bench._harness import Figure, Goal, Run

RATE = 100.0
SECONDS = 5.0
SETTLE_SECONDS = 30.0
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>)]+")
_runs = itertools.count()


def _overrides() -> dict[str, dict[str, str]]:
    common = _processes.common_overrides()
    return {
        **{name: dict(common) for name in _processes.SERVICES},
        "notifier": {
            **common,
            "DEFAULT_CONTACT_HOURLY_LIMIT": "1000000",
            "DEFAULT_WORKSPACE_HOURLY_LIMIT": "1000000",
        },
        "billing_gateway": {**common, "STRIPE_RATE_LIMIT_TEST": "1000"},
    }


async def _invoices(client: Client, customer: str, count: int) -> list[dict[str, Any]]:
    """``count`` finalized invoices of the customer, made with the webhooks paused (their
    own events would otherwise load the system during the measurement)."""
    await client.webhooks_enabled(False)
    slots = asyncio.Semaphore(8)

    async def one() -> dict[str, Any]:
        async with slots:
            draft = await client.stripe(
                "POST", "/v1/invoices", customer=customer, collection_method="send_invoice"
            )
            found: dict[str, Any] = await client.stripe(
                "POST", f"/v1/invoices/{draft['id']}/finalize"
            )
            return found

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _event(run: int, number: int, invoice: dict[str, Any]) -> bytes:
    event = {
        "id": f"evt_bench_{run}_{number}",
        "object": "event",
        "type": "invoice.payment_failed",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": invoice},
    }
    return json.dumps(event).encode()


async def _received(client: Client) -> list[dict[str, Any]]:
    async with client.http.get(f"{client.system.url('smtp_sink_http')}/messages") as response:
        messages: list[dict[str, Any]] = (await response.json())["messages"]
        return messages


async def _webhooks_to_inbox(
    client: Client,
) -> tuple[_harness.Stats, list[float], int, int]:
    """(webhook acks, event -> email latencies, emails lost, duplicates)."""
    system = client.system
    secret = await system.signing_secret()
    customer = (await client.customer("carol@example.com"))["id"]
    invoices = await _invoices(client, customer, int(RATE * SECONDS))
    number_of_url = {str(invoice["hosted_invoice_url"]): n for n, invoice in enumerate(invoices)}
    run = next(_runs)
    sent_at: dict[int, float] = {}
    numbers = itertools.count()
    url = f"{system.url('edge')}/api/stripe/webhooks/{system.workspace_id}"

    async def post() -> None:
        number = next(numbers)
        body = _event(run, number, invoices[number])
        stamp = int(time.time())
        digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        sent_at[number] = time.time()
        async with client.http.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": f"t={stamp},v1={digest.hexdigest()}",
            },
        ) as response:
            if response.status != 200:
                sent_at.pop(number, None)
                raise RuntimeError(f"HTTP {response.status}")

    acks = await _harness.fixed_rate(post, RATE, SECONDS)
    received: dict[int, float] = {}
    copies = 0
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        copies = 0
        for mail in await _received(client):
            urls = _URL_IN_TEXT.findall(mail.get("text", "") + " " + mail.get("html", ""))
            number = next((number_of_url[u] for u in urls if u in number_of_url), None)
            if number is not None and number in sent_at:
                copies += 1
                received.setdefault(number, float(mail["received_at"]))
        if len(received) >= len(sent_at):
            break
        await asyncio.sleep(0.5)
    latencies = [received[n] - sent_at[n] for n in received]
    return acks, latencies, len(sent_at) - len(received), copies - len(received)


async def _bare_smtp(port: int) -> _harness.Stats:
    pool = _bare.SmtpPool("127.0.0.1", port, size=8)

    async def send() -> None:
        message = EmailMessage()
        message["From"] = "bench@askvault.local"
        message["To"] = "baseline@example.com"
        message["Subject"] = "baseline"
        message.set_content("bare SMTP send")
        message.add_alternative("<p>bare SMTP send</p>", subtype="html")
        await pool.send(message)

    try:
        return await _harness.fixed_rate(send, RATE, SECONDS)
    finally:
        await pool.close()


async def run() -> Run:
    async with (
        _processes.running(_overrides()) as system,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
    ):
        client = Client(system, http)
        await client.wait_mirror_warm()
        await asyncio.sleep(2.0)  # let start-up work (seeded webhooks, their emails) settle
        # The baseline first, on the idle sink (after the load the sink may still be busy).
        began = time.monotonic()
        baseline = await _bare_smtp(system.ports["smtp_sink"])
        async with http.delete(f"{system.url('smtp_sink_http')}/messages"):
            pass
        async with system.usage() as usage:
            acks, latencies, lost, duplicates = await _webhooks_to_inbox(client)
        memory = system.memory()
        load_seconds = round(time.monotonic() - began, 1)
        exited = system.exited()
    emails = _harness.Stats(len(latencies), lost, acks.seconds, tuple(latencies))
    figures = [
        _harness.tail_figure(
            "event_to_email_tail",
            f"webhook -> email at the sink, {RATE:.0f} events/s",
            emails,
            goal=Goal("<= 1000 ms", at_most=1000.0),
            baseline=baseline,
        ),
        Figure(
            "emails_lost",
            f"events acknowledged, no email {SETTLE_SECONDS:.0f} s after",
            lost,
            "",
            goal=Goal("0", at_most=0),
        ),
        Figure("duplicates", "duplicate emails", duplicates, "", goal=Goal("0", at_most=0)),
        Figure(
            "webhooks_refused",
            "webhooks not acknowledged (2xx)",
            acks.failed,
            "",
            goal=Goal("0", at_most=0),
        ),
        _harness.tail_figure("webhook_ack_tail", "webhook acknowledgement", acks),
        *(
            Figure(
                f"rss_{name}",
                f"peak RSS (VmHWM) of {name}",
                found["peak_rss_mb"],
                "MB",
                goal=Goal("<= 100 MB", at_most=100.0),
            )
            for name, found in memory.items()
        ),
    ]
    details = {
        # Includes the settling after the last event, until every email arrived.
        "cost_per_event": usage[0].per_operation(acks.completed),
        "webhook_acks": acks.as_dict(),
        "emails": {
            "received": len(latencies),
            "lost": lost,
            "duplicates": duplicates,
            **emails.as_dict(),
        },
        "baseline_bare_smtp_8_connections": baseline.as_dict(),
        "memory_mb": memory,
        "processes_exited": exited,
        "seconds_baseline_invoices_load_and_settle": load_seconds,
        "settings_changed": "billing gateway STRIPE_RATE_LIMIT_TEST=1000 (its own limiter); "
        "notifier DEFAULT_CONTACT_HOURLY_LIMIT, DEFAULT_WORKSPACE_HOURLY_LIMIT lifted",
    }
    return Run(figures, details)
