"""Per-account protections around Stripe: a circuit breaker and a token bucket.

Both take the time as an argument (monotonic seconds), so they are tested without sleeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class BreakerState(enum.StrEnum):
    """Closed: calls flow. Open: calls fail at once. Half-open: one probe may go."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown`` seconds lets one
    probe through (half-open); the probe's success closes it, its failure re-opens it."""

    threshold: int
    cooldown: float
    failures: int = 0
    opened_at: float | None = None
    probe_in_flight: bool = False

    def state(self, now: float) -> BreakerState:
        """The state at this time."""
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: float) -> bool:
        """Whether a call may go now (a half-open breaker admits one probe at a time)."""
        current = self.state(now)
        if current is BreakerState.CLOSED:
            return True
        if current is BreakerState.HALF_OPEN and not self.probe_in_flight:
            self.probe_in_flight = True
            return True
        return False

    def release_probe(self) -> None:
        """The admitted probe was never sent (no time, no token): another may go."""
        self.probe_in_flight = False

    def record_success(self) -> None:
        """A call got an answer from Stripe (even a 4xx): Stripe is up."""
        self.failures = 0
        self.opened_at = None
        self.probe_in_flight = False

    def record_failure(self, now: float) -> None:
        """A call met a 5xx, 429, timeout or connection error."""
        self.failures += 1
        if self.probe_in_flight or self.failures >= self.threshold:
            self.opened_at = now
        self.probe_in_flight = False


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved; ``reserve`` returns how long
    the caller must wait for its token, so bursts queue instead of meeting Stripe's 429s."""

    rate: float
    capacity: float
    tokens: float = field(default=-1.0)
    updated_at: float = 0.0

    def reserve(self, now: float) -> float:
        """Takes one token (possibly borrowed from the future) and returns the wait."""
        if self.tokens < 0 and self.updated_at == 0.0:
            self.tokens = self.capacity
            self.updated_at = now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def give_back(self) -> None:
        """Returns a token whose call was abandoned before it was sent."""
        self.tokens = min(self.capacity, self.tokens + 1.0)
