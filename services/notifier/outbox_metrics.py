"""The outbox's metrics (OpenTelemetry, served to Prometheus by runtime/telemetry.py):

- ``askvault_notifier_outbox_oldest_age_seconds{channel}``: how long the oldest message
  waiting to be sent by each channel has waited. Read from the database by a loop every
  ``REFRESH_SECONDS`` (one grouped query over the queued rows' index), never per scrape, so
  scrapes stay cheap whatever the backlog. Every replica reports the same outbox: alert on
  the max over replicas. A message an admin resends counts from its creation (no column
  keeps when it was queued again); it is due at once, so it is seldom waiting long.
- ``askvault_notifier_dead_letters_total{channel}``: messages that went dead (no attempt
  left, or a failure no retry can mend), counted by the worker that buried them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import asyncpg
from opentelemetry import metrics

from notifier import message_store
from notifier.domain import outbox
from runtime.database import UNAVAILABLE_ERRORS
from runtime.periodic import Periodic, Schedule

# Seconds between reads of the outbox's age.
REFRESH_SECONDS = 15.0
# Reads missed in a row after which the last age is no longer reported: a stale age would
# hide a backlog that grew while the database could not be read.
_STALE_AFTER_REFRESHES = 4
# Channels reported even with nothing waiting (age 0), so their series never vanish.
CHANNELS = (outbox.EMAIL, outbox.WHATSAPP, outbox.HELPDESK_WEBHOOK)

_meter = metrics.get_meter("askvault.notifier")
_dead_letters = _meter.create_counter(
    "askvault.notifier.dead_letters",
    description="Outbox messages that went dead (no attempt left or a permanent failure)",
)


def count_dead_letter(channel: str) -> None:
    """One message of ``channel`` went dead."""
    _dead_letters.add(1, {"channel": channel})


class OutboxAge:
    """The outbox's age as last read; the gauge reports it when Prometheus scrapes."""

    def __init__(self) -> None:
        self._ages: dict[str, float] = {}
        self._read_at: float | None = None

    def update(self, ages: dict[str, float]) -> None:
        """Keeps a fresh read (channel -> seconds; absent channels have nothing waiting)."""
        self._ages = {channel: ages.get(channel, 0.0) for channel in {*CHANNELS, *ages}}
        self._read_at = time.monotonic()

    def observe(self, _options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        """The gauge's callback: the last read, unless it is stale."""
        if self._read_at is None:
            return []
        if time.monotonic() - self._read_at > REFRESH_SECONDS * _STALE_AFTER_REFRESHES:
            return []
        return [metrics.Observation(age, {"channel": ch}) for ch, age in self._ages.items()]


# One per process: the gauge is registered once, whatever the number of services started.
outbox_age = OutboxAge()
_meter.create_observable_gauge(
    "askvault.notifier.outbox.oldest_age",
    callbacks=[outbox_age.observe],
    unit="s",
    description="Seconds the oldest message waiting to be sent has waited, by channel",
)


async def refresh(pool: asyncpg.Pool) -> None:
    """Reads the outbox's age now."""
    async with pool.acquire() as connection:
        outbox_age.update(await message_store.outbox_ages(connection))


def refresher(pool: asyncpg.Pool) -> Periodic:
    """The loop that keeps the outbox's age fresh."""

    async def step() -> None:
        await refresh(pool)

    return Periodic(
        "notifier-outbox-age",
        step,
        Schedule(REFRESH_SECONDS, jitter=0.1),
        failure_message="outbox age not read",
        quiet=UNAVAILABLE_ERRORS,
    )
