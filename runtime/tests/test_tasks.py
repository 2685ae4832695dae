"""Stops that always end: the health watch under cancels at random moments, and the bounded
waits of ``runtime.tasks`` against tasks that ignore a stop or a cancel."""

from __future__ import annotations

import asyncio
import random

from runtime import tasks
from runtime.health import DATABASE, Health

# Watches cancelled at random moments. Before the probe's bound was ``asyncio.timeout``, about
# one watch in five (probe every millisecond) swallowed its cancel and ran on forever.
_CANCELLED_WATCHES = 400


async def test_a_cancelled_health_watch_always_ends() -> None:
    rng = random.Random(12)
    survivors = 0
    for _ in range(_CANCELLED_WATCHES):
        health = Health(["askvault.test.v1.TestService"])

        async def probe() -> None:
            await asyncio.sleep(rng.random() * 0.002)

        stop = asyncio.Event()  # never set: only the cancel may end the watch
        watch = asyncio.create_task(health.watch(DATABASE, probe, 0.001, stop))
        await asyncio.sleep(rng.random() * 0.006)
        watch.cancel()
        done, _ = await asyncio.wait({watch}, timeout=1.0)
        if not done:
            survivors += 1
            stop.set()
            while not watch.done():  # a swallowed cancel is usually not swallowed twice
                watch.cancel()
                await asyncio.wait({watch}, timeout=0.1)
    assert survivors == 0, f"{survivors} of {_CANCELLED_WATCHES} watches ran on after cancel()"


async def test_a_health_watch_ends_when_told_to_stop_even_mid_probe() -> None:
    health = Health([])
    probing = asyncio.Event()

    async def slow_probe() -> None:
        probing.set()
        await asyncio.sleep(0.3)

    stop = asyncio.Event()
    watch = asyncio.create_task(health.watch(DATABASE, slow_probe, 60.0, stop))
    await probing.wait()
    stop.set()
    # The probe in progress finishes; the 60 s sleep after it is cut short by the stop.
    done, _ = await asyncio.wait({watch}, timeout=5.0)
    assert done
    assert health.components()[DATABASE] is True


async def test_a_probe_that_hangs_makes_the_component_unhealthy_and_the_watch_goes_on() -> None:
    health = Health([])
    calls = 0

    async def hanging_probe() -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    stop = asyncio.Event()
    watch = asyncio.create_task(health.watch(DATABASE, hanging_probe, 0.01, stop))
    for _ in range(500):
        if calls >= 2:
            break
        await asyncio.sleep(0.01)
    assert calls >= 2
    assert health.components()[DATABASE] is False
    stop.set()
    assert await tasks.finish(watch)


async def test_finish_cancels_a_task_that_ignores_its_stop_event() -> None:
    async def ignores_stop() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(ignores_stop())
    assert await tasks.finish(task, 0.05, after_cancel_seconds=1.0)
    assert task.cancelled()


async def test_finish_leaves_behind_a_task_that_swallows_every_cancel_instead_of_hanging() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    assert not await tasks.finish(task, 0.05, after_cancel_seconds=0.1)
    assert not task.done()
    release.set()
    await asyncio.wait({task}, timeout=1.0)
    assert task.done()


async def test_finish_reports_but_does_not_raise_a_task_failure() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    assert await tasks.finish(task, 1.0)


async def test_bounded_gives_up_on_a_step_that_hangs() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def quick() -> None:
        await asyncio.sleep(0)

    assert not await tasks.bounded(hangs(), 0.05, "hanging step")
    assert await tasks.bounded(quick(), 1.0, "quick step")


async def test_wait_any_leaves_no_waiter_behind() -> None:
    before = asyncio.all_tasks()
    first, second = asyncio.Event(), asyncio.Event()
    await tasks.wait_any((first, second), 0.01)
    second.set()
    await tasks.wait_any((first, second), 10.0)
    waiting = asyncio.create_task(tasks.wait_any((first,), None))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.wait({waiting})
    assert asyncio.all_tasks() - before == set()
