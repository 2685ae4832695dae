"""The demo seed (deterministic, idempotent, usable remotely), start-up and persistence."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import stripe

from stripe_emulator import app, seed
from stripe_emulator.app import RunningEmulator
from stripe_emulator.state import State
from stripe_emulator.tests.conftest import close_http, make_client

SEED_TIME = 1_790_000_000


def test_seed_is_deterministic_and_idempotent() -> None:
    first_state, second_state = State(), State()
    first = seed.seed_demo(first_state, now=SEED_TIME)
    second = seed.seed_demo(second_state, now=SEED_TIME)
    assert first == second
    assert seed.seed_demo(first_state, now=SEED_TIME) == first
    assert set(first["customers"]) == set(seed.DEMO_EMAILS)
    statuses = {email: entry["status"] for email, entry in first["customers"].items()}
    assert statuses == {
        "alice@example.com": "active",
        "bob@example.com": "active",
        "carol@example.com": "past_due",
        "dev@example.in": "active",
        "erin@example.com": "trialing",
    }
    assert set(first["products"]) == {"starter", "growth", "business"}
    assert set(first["products"]["growth"]["prices"]) == {"usd", "eur", "inr"}
    assert len(first["customers"]["alice@example.com"]["invoices"]) == 5


async def test_seed_remote_through_the_admin_endpoint(emulator: RunningEmulator) -> None:
    summary = await seed.seed_remote(emulator.url)
    client, http_client = make_client(emulator, seed.DEMO_API_KEY)
    try:
        growth = await client.v1.products.retrieve_async(summary["products"]["growth"]["product"])
        assert growth.metadata["tier"] == "growth"
        assert growth.marketing_features[0].name == "Up to 10 seats"
    finally:
        await close_http(http_client)


@pytest.mark.integration
async def test_state_file_keeps_state_across_restarts(tmp_path: Path) -> None:
    state_file = tmp_path / "stripe.json"
    first = await app.start(state_file=state_file)
    client, http_client = make_client(first, "sk_test_persisted")
    created = await client.v1.customers.create_async(params={"email": "kept@example.com"})
    await close_http(http_client)
    await first.close()
    assert state_file.exists()
    second = await app.start(state_file=state_file)
    client, http_client = make_client(second, "sk_test_persisted")
    try:
        assert (await client.v1.customers.retrieve_async(created.id)).email == "kept@example.com"
    finally:
        await close_http(http_client)
        await second.close()


@pytest.mark.integration
async def test_command_line_starts_seeds_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stripe_emulator",
        "--port",
        "0",
        "--seed",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stderr.readline(), 10)).decode()
            assert line, "the emulator exited before listening"
            if "listening on" in line:
                url = line.rsplit(" ", 1)[-1].strip()
        output = b""
        while b"\n}\n" not in output:
            output += await asyncio.wait_for(process.stdout.read(4096), 5)
        summary = json.loads(output)
        client = stripe.StripeClient(seed.DEMO_API_KEY, base_addresses={"api": url})
        customer_id = summary["customers"]["alice@example.com"]["customer"]
        customer = await asyncio.to_thread(client.v1.customers.retrieve, customer_id)
        assert customer.email == "alice@example.com"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
