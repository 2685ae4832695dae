"""On one stack as ``make run`` starts it: ``make demo`` twice in a row plays the same journey
with the same outcome, and ``make conformance`` passes against it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chaos import stack as chaos_stack
from conformance import __main__ as conformance
from conformance import target as conformance_target
from devstack import chat

pytestmark = pytest.mark.slow

SERVICES = ("identity", "policy", "billing_gateway", "notifier", "edge")


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[chaos_stack.ChaosStack]:
    # The stack as `make run` starts it (devstack's plan and provisioning, the services'
    # default intervals), on free ports and its own PostgreSQL; no metrics ports.
    overrides = {name: {"METRICS_PORT": "0"} for name in SERVICES}
    async with chaos_stack.running(tmp_path_factory.mktemp("logs"), overrides) as running:
        yield running


def _without_references(transcript: list[str]) -> list[str]:
    """The transcript with what differs by nature between two plays (Stripe refund ids)."""
    return [re.sub(r"\bre_[A-Za-z0-9]+", "re_…", line) for line in transcript]


async def test_the_demo_plays_the_same_twice_on_one_stack(
    stack: chaos_stack.ChaosStack,
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
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


async def test_conformance_passes_against_the_local_stack_twice(
    stack: chaos_stack.ChaosStack, tmp_path: Path
) -> None:
    """Every check passes, and again on the same stack: the refund check puts the demo
    customer back in its story first, so a platform team can rerun it."""
    target = conformance_target.local(ports=stack.ports)
    for run in range(2):
        report = await conformance.check(target)
        failed = [r for r in report.results if not r.passed]
        assert failed == [], (run, failed)
    names = {result.name for result in report.results}
    # Every service and every kind of check took part.
    assert {f"{s}: refusals of empty requests" for s in conformance_target.SERVICES} <= names
    assert {"journey: refund once", "edge: Stripe webhook signature"} <= names
    report.write(tmp_path / "conformance.json")
    assert '"passed": true' in (tmp_path / "conformance.json").read_text()
