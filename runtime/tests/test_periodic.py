"""The periodic-worker shape: what it waits after work, no work and failures, that a wake-up
ends an idle wait, that a failing step does not end the loop, and that a stop does."""

from __future__ import annotations

import asyncio
import random

import pytest

from runtime.periodic import Periodic, Schedule

# Long enough that a test which passes never waits it out: only a wake-up or a stop ends it.
_FOREVER = 3600.0


def test_the_wait_after_work_none_and_failures() -> None:
    rng = random.Random(1)
    schedule = Schedule(
        interval_seconds=10,
        busy_seconds=0,
        failure_seconds=1,
        failure_backoff=2,
        failure_cap_seconds=5,
    )
    assert schedule.after(True, 0, rng) == 0
    assert schedule.after(False, 0, rng) == 10
    assert [schedule.after(False, n, rng) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    # Without a busy or failure wait of its own, every step is followed by the interval.
    plain = Schedule(interval_seconds=7)
    assert plain.after(True, 0, rng) == plain.after(False, 0, rng) == plain.after(False, 3, rng)


def test_jitter_spreads_the_wait_within_its_fraction() -> None:
    rng = random.Random(2)
    schedule = Schedule(interval_seconds=100, jitter=0.1)
    waits = {schedule.after(False, 0, rng) for _ in range(200)}
    assert all(90 <= wait <= 110 for wait in waits)
    assert len(waits) > 1
    # Work left is taken at once, jitter or not.
    assert Schedule(interval_seconds=100, busy_seconds=0, jitter=0.5).after(True, 0, rng) == 0


async def test_work_left_runs_at_once_and_a_wake_ends_the_idle_wait() -> None:
    left = [3]
    idle = asyncio.Event()
    steps = 0

    async def step() -> int:
        nonlocal steps
        steps += 1
        if left[0]:
            left[0] -= 1
            return 1
        idle.set()
        return 0

    loop = Periodic("test-loop", step, Schedule(interval_seconds=_FOREVER, busy_seconds=0))
    loop.start()
    await asyncio.wait_for(idle.wait(), 10)
    assert steps == 4  # three with work, then one that found none
    idle.clear()
    left[0] = 1
    loop.wake()
    await asyncio.wait_for(idle.wait(), 10)
    assert steps == 6
    await asyncio.wait_for(loop.stop(), 10)


async def test_a_failing_step_does_not_end_the_loop() -> None:
    calls = 0
    recovered = asyncio.Event()

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError("database down")
        if calls == 3:
            raise RuntimeError("a bug")
        recovered.set()
        return False

    loop = Periodic(
        "test-failing",
        step,
        Schedule(interval_seconds=_FOREVER, failure_seconds=0),
        quiet=(ConnectionError,),
    )
    loop.start()
    await asyncio.wait_for(recovered.wait(), 10)
    assert calls == 4
    await asyncio.wait_for(loop.stop(), 10)


@pytest.mark.parametrize("own_task", [True, False])
async def test_a_stop_ends_an_idle_wait(own_task: bool) -> None:
    stepped = asyncio.Event()

    async def step() -> None:
        stepped.set()

    loop = Periodic("test-stop", step, Schedule(interval_seconds=_FOREVER))
    if own_task:
        loop.start()
        await asyncio.wait_for(stepped.wait(), 10)
        await asyncio.wait_for(loop.stop(), 10)
    else:
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        await asyncio.wait_for(stepped.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert task.done() and task.exception() is None
