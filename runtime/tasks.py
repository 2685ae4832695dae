"""Background work that always ends: every wait in a stop has a bound, and a task is stopped
by an event it checks *and* by a cancel, so neither a swallowed cancellation nor a stuck
await can hang a shutdown.

Why not ``asyncio.wait_for`` around each step: on Python 3.11 it returns the inner result and
drops a cancellation that arrives just as the inner call finishes (bpo-42130), so a loop that
calls it keeps running after ``cancel()``; ``asyncio.timeout`` and ``asyncio.wait`` do not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

logger = logging.getLogger(__name__)

# Seconds a stopped task gets to end by itself (it saw the stop event) before it is
# cancelled, and again after the cancel before it is left behind.
STOP_STEP_SECONDS = 5.0


async def finish(
    task: asyncio.Future[Any],
    seconds: float = STOP_STEP_SECONDS,
    *,
    after_cancel_seconds: float = STOP_STEP_SECONDS,
) -> bool:
    """Waits up to ``seconds`` for a task to end, cancels it if it has not, and waits up to
    ``after_cancel_seconds`` more. True when the task ended; a task that refuses to end is
    logged and left behind rather than allowed to hang the caller. The task's own exception
    is logged, never raised: a stop goes on with its next step."""
    done, _ = await asyncio.wait({task}, timeout=seconds) if seconds > 0 else (set(), set())
    if not done and not task.done():
        if seconds > 0:
            logger.warning("task did not stop in time; cancelling", extra={"task": _name(task)})
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=after_cancel_seconds)
    if not task.done():
        logger.error("task ignored its cancellation; left behind", extra={"task": _name(task)})
        return False
    if not task.cancelled() and task.exception() is not None:
        logger.warning("task failed", extra={"task": _name(task)}, exc_info=task.exception())
    return True


async def finish_all(
    tasks: Iterable[asyncio.Future[Any]],
    seconds: float = STOP_STEP_SECONDS,
    *,
    after_cancel_seconds: float = STOP_STEP_SECONDS,
) -> bool:
    """``finish`` for several tasks at once (they share the bound); True when all ended."""
    pending = list(tasks)
    if not pending:
        return True
    results = await asyncio.gather(
        *(finish(task, seconds, after_cancel_seconds=after_cancel_seconds) for task in pending)
    )
    return all(results)


async def bounded(step: Coroutine[Any, Any, object], seconds: float, what: str) -> bool:
    """Runs one step of a stop (a server's stop, a pool's close) in its own task with a
    bound; past it the step is cancelled (and left behind if it ignores that). True when the
    step finished by itself."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if done:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("stop step failed", extra={"step": what}, exc_info=task.exception())
        return True
    logger.warning("stop step did not finish in time", extra={"step": what, "seconds": seconds})
    await finish(task, 0)
    return False


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps up to ``seconds``; returns early (True) as soon as ``stop`` is set."""
    await wait_any((stop,), seconds)
    return stop.is_set()


async def wait_any(events: Iterable[asyncio.Event], seconds: float | None) -> None:
    """Waits until one of ``events`` is set or ``seconds`` (None: no limit) have passed. The
    waiters it makes are its own and are reaped before it returns or is cancelled."""
    events = list(events)
    if any(event.is_set() for event in events):
        return
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        # Cancelled waiters of Event.wait end at the loop's next turn.
        await asyncio.wait(waiters)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
