"""The whole system as real processes (what `make run` starts): a failed-payment webhook
into the edge until the customer's email reaches the SMTP sink, at a fixed 100 events/s,
beside a bare SMTP send to the same sink at the same rate; and the memory of each process.

Differences from production settings, all stated in the result: the Stripe emulator's
test-mode rate limit (25 requests/s per account) is lifted, because each event costs the
gateway one customer lookup and 100 events/s would otherwise queue behind it; the per-contact
send limit is lifted, because every event is for the same demo customer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib

from bench import _harness
from chaos import stack as chaos_stack
from chaos.webhooks import signing_secret

RATE = 100.0
SECONDS = 10.0
SETTLE_SECONDS = 60.0
_INVOICE_IN_TEXT = re.compile(r"bench\.invalid/(\d+)")


def _process_overrides() -> dict[str, dict[str, str]]:
    common = {"METRICS_PORT": "0", "GRPC_HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    return {
        "identity": dict(common),
        "policy": dict(common),
        "notifier": {
            **common,
            "DEFAULT_CONTACT_HOURLY_LIMIT": "1000000",
            "DEFAULT_WORKSPACE_HOURLY_LIMIT": "1000000",
        },
        "billing_gateway": {**common, "STRIPE_RATE_LIMIT_TEST": "1000"},
        "edge": {
            **common,
            "VISITOR_TURNS_PER_MINUTE": "1000000",
            "ADDRESS_REQUESTS_PER_MINUTE": "1000000",
        },
    }


def _event(number: int, customer: str) -> bytes:
    invoice = {
        "id": f"in_bench_{number}",
        "object": "invoice",
        "customer": customer,
        "amount_due": 4900,
        "currency": "usd",
        "attempt_count": 1,
        "status": "open",
        "hosted_invoice_url": f"https://bench.invalid/{number}",
    }
    event = {
        "id": f"evt_bench_{number}",
        "object": "event",
        "type": "invoice.payment_failed",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": invoice},
    }
    return json.dumps(event).encode()


async def _webhooks_to_inbox(
    system: chaos_stack.ChaosStack, http: aiohttp.ClientSession
) -> tuple[_harness.Stats, dict[int, float], int]:
    secret = await signing_secret(system)
    async with http.get(
        f"{system.url('stripe_emulator')}/v1/customers/search",
        params={"query": "email:'carol@example.com'"},
        headers={"Authorization": f"Bearer {system.demo.raw['stripe']['secret_key']}"},
    ) as response:
        customer = (await response.json())["data"][0]["id"]
    sent_at: dict[int, float] = {}
    numbers = iter(range(1_000_000))
    url = f"{system.url('edge')}/api/stripe/webhooks/{system.workspace_id}"

    async def post() -> None:
        number = next(numbers)
        body = _event(number, customer)
        stamp = int(time.time())
        digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        sent_at[number] = time.time()
        async with http.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": f"t={stamp},v1={digest.hexdigest()}",
            },
        ) as response:
            response.raise_for_status()

    stats = await _harness.fixed_rate(post, RATE, SECONDS)
    received: dict[int, float] = {}
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and len(received) < stats.completed:
        async with http.get(f"{system.url('smtp_sink_http')}/messages") as response:
            for mail in (await response.json())["messages"]:
                found = _INVOICE_IN_TEXT.search(mail.get("text", ""))
                if found:
                    received.setdefault(int(found[1]), float(mail["received_at"]))
        await asyncio.sleep(0.5)
    duplicates = 0
    async with http.get(f"{system.url('smtp_sink_http')}/stats") as response:
        duplicates = int((await response.json()).get("duplicates", 0))
    return stats, {n: received[n] - sent_at[n] for n in received if n in sent_at}, duplicates


async def _bare_smtp(port: int) -> tuple[_harness.Stats, list[float]]:
    latencies: list[float] = []

    async def send() -> None:
        message = EmailMessage()
        message["From"] = "bench@askvault.local"
        message["To"] = "baseline@example.com"
        message["Subject"] = "baseline"
        message.set_content("bare SMTP send")
        started = time.perf_counter()
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=10)
        latencies.append(time.perf_counter() - started)

    stats = await _harness.fixed_rate(send, RATE, SECONDS)
    return stats, latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000 if ordered else 0.0


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="askvault-bench-") as logs:
        async with (
            chaos_stack.running(Path(logs), process_overrides=_process_overrides()) as system,
            aiohttp.ClientSession() as http,
        ):
            await asyncio.sleep(2.0)  # let start-up work (seeded webhooks) settle
            idle_rss = {
                name: _harness.rss_mb(child.process.pid)
                for name, child in system.children.items()
                if child.process is not None
            }
            stats, latencies, duplicates = await _webhooks_to_inbox(system, http)
            loaded_rss = {
                name: _harness.rss_mb(child.process.pid)
                for name, child in system.children.items()
                if child.process is not None
            }
            async with http.delete(f"{system.url('smtp_sink_http')}/messages"):
                pass
            baseline, baseline_latencies = await _bare_smtp(system.ports["smtp_sink"])
    values = list(latencies.values())
    return {
        "scenario": (
            f"invoice.payment_failed webhook -> edge -> billing inbox -> notifier outbox -> "
            f"SMTP sink, {RATE:.0f} events/s for {SECONDS:.0f} s, every service its own process"
        ),
        "events_sent": stats.completed,
        "events_refused": stats.failed,
        "emails_received": len(values),
        "emails_lost": stats.completed - len(values),
        "duplicate_emails": duplicates,
        "webhook_ack_p50_ms": round(stats.p50_ms, 1),
        "webhook_ack_p99_ms": round(stats.p99_ms, 1),
        "event_to_email_p50_ms": round(_percentile(values, 0.5), 1),
        "event_to_email_p99_ms": round(_percentile(values, 0.99), 1),
        "baseline_sends": baseline.completed,
        "baseline_bare_smtp_send_p50_ms": round(_percentile(baseline_latencies, 0.5), 1),
        "baseline_bare_smtp_send_p99_ms": round(_percentile(baseline_latencies, 0.99), 1),
        "ratio_p99_to_baseline": _harness.ratio(
            _percentile(values, 0.99), _percentile(baseline_latencies, 0.99)
        ),
        "rss_mb_idle": idle_rss,
        "rss_mb_after_load": loaded_rss,
        "settings_lifted": "Stripe test-mode rate limit (emulator), per-contact send limit",
    }
