"""``make demo`` twice in a row on one ``make run``: the same journey, the same outcome."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from chaos import stack as chaos_stack
from devstack import chat

pytestmark = pytest.mark.slow

SERVICES = ("identity", "policy", "billing_gateway", "notifier", "edge")


def _without_references(transcript: list[str]) -> list[str]:
    """The transcript with what differs by nature between two plays (Stripe refund ids)."""
    return [re.sub(r"\bre_[A-Za-z0-9]+", "re_…", line) for line in transcript]


async def test_the_demo_plays_the_same_twice_on_one_stack(tmp_path: Path) -> None:
    # The stack as `make run` starts it (devstack's plan and provisioning, the services'
    # default intervals), on free ports and its own PostgreSQL; no metrics ports.
    overrides = {name: {"METRICS_PORT": "0"} for name in SERVICES}
    async with (
        chaos_stack.running(tmp_path / "logs", overrides) as stack,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):
        plays = [
            await chat.play_demo(http, stack.demo, stack.url("edge"), stack.url("stripe_emulator"))
            for _ in range(2)
        ]
    first, second = plays
    text = "\n".join(first)
    # The first play did the journey: the duplicate refunded, the upgrade done.
    assert "I've refunded $19" in text, text
    assert "you're now on the Growth plan" in text, text
    assert "You're on the Growth plan" in first[-1], text
    assert _without_references(second) == _without_references(first), "\n".join(second)
