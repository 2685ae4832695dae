"""One shape for the services' background loops: run a step, wait, run it again, until
stopped.

A step answers whether it did work (anything truthy: a count, True). What follows a step:
  - it did work: ``busy_seconds`` (0: the next step at once, while work is left;
    None: the plain interval);
  - it did none: ``interval_seconds``, ended early by ``wake()`` (work stored by this
    replica) or by the stop;
  - it raised: ``failure_seconds`` (None: the interval), times ``failure_backoff`` for every
    further failure in a row, up to ``failure_cap_seconds``; the failure is logged (the
    ``quiet`` exceptions, such as a database that is down, as a one-line warning) and the
    loop goes on.
Every wait but the one after work left may be spread by ``jitter`` (a fraction: 0.1 waits
between 90% and 110%), so that replicas started together do not step together.

A loop runs in its own task (``start``/``stop``) or inside a caller's (``run``, given the
caller's stop event); either way a stop is bounded (runtime.tasks).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from runtime import tasks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """When a loop's next step runs (see the module's docstring)."""

    interval_seconds: float
    busy_seconds: float | None = None
    failure_seconds: float | None = None
    failure_backoff: float = 1.0
    failure_cap_seconds: float | None = None
    jitter: float = 0.0

    def after(self, worked: bool, failures: int, rng: random.Random) -> float:
        """Seconds to wait after a step: one that did work (``worked``), none, or the last of
        ``failures`` failed steps in a row."""
        if failures:
            base = self.interval_seconds if self.failure_seconds is None else self.failure_seconds
            seconds = base * self.failure_backoff ** (failures - 1)
            if self.failure_cap_seconds is not None:
                seconds = min(seconds, self.failure_cap_seconds)
        elif worked and self.busy_seconds is not None:
            if self.busy_seconds == 0:
                return 0.0
            seconds = self.busy_seconds
        else:
            seconds = self.interval_seconds
        if self.jitter:
            seconds *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(seconds, 0.0)


class Periodic:
    """Runs ``step`` on ``schedule`` until stopped; ``name`` names its task and its logs."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        schedule: Schedule,
        *,
        failure_message: str = "worker step failed",
        quiet: tuple[type[BaseException], ...] = (),
        wake: asyncio.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._step = step
        self._schedule = schedule
        self._failure_message = failure_message
        self._quiet = quiet
        self._rng = rng or random.Random()
        # Several loops of one queue may share their wake-up event (``wake``).
        self._wake = wake or asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Work was stored: a loop waiting after an idle step steps at once."""
        self._wake.set()

    def start(self) -> None:
        """Starts the loop in its own task."""
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        """Stops after the step in progress, if any (bounded: runtime.tasks.finish)."""
        self._stopping.set()
        if self._task is not None:
            await tasks.finish(self._task)
            self._task = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """The loop, until ``stop`` (or ``self.stop()``) is set."""
        stops = [self._stopping] if stop is None else [self._stopping, stop]
        failures = 0
        while not any(event.is_set() for event in stops):
            # Cleared before the step: work stored during it wakes the wait below.
            self._wake.clear()
            worked = False
            try:
                worked = bool(await self._step())
                failures = 0
            except self._quiet as error:
                failures += 1
                logger.warning(
                    self._failure_message,
                    extra={"worker": self.name, "error": type(error).__name__},
                )
            except Exception:
                failures += 1
                logger.exception(self._failure_message, extra={"worker": self.name})
            seconds = self._schedule.after(worked, failures, self._rng)
            if seconds > 0:
                await tasks.wait_any([*stops, self._wake], seconds)
