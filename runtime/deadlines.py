"""The deadline of the RPC being served, so that calls made on its behalf end no later."""

from __future__ import annotations

import contextvars
import time

# Monotonic time at which the current RPC's caller stops waiting; None without a deadline.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "askvault_deadline", default=None
)


def set_from_remaining(seconds_remaining: float | None) -> contextvars.Token[float | None]:
    """Records the current RPC's deadline (called by the server interceptor)."""
    deadline = None if seconds_remaining is None else time.monotonic() + seconds_remaining
    return _deadline.set(deadline)


def reset(token: contextvars.Token[float | None]) -> None:
    """Restores the previous deadline."""
    _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline, or None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def timeout(default: float) -> float:
    """The timeout for an outgoing call: the default, cut to what the caller has left."""
    left = remaining()
    return default if left is None else max(0.0, min(default, left))
