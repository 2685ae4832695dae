"""Fixed-window request limits per key (visitor, client address), kept in memory.

Each replica limits on its own; with N replicas a visitor gets at most N times the limit,
which is the bound wanted here: protection from floods, not billing-grade accounting.
"""

from __future__ import annotations

import time


class RateLimiter:
    """At most ``limit`` hits per key in each ``window_seconds`` window."""

    def __init__(self, limit: int, window_seconds: float = 60.0, max_keys: int = 100_000) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        self._counts: dict[str, tuple[int, int]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        """Counts a hit; False when the key is over its limit in the current window."""
        window = int((time.monotonic() if now is None else now) // self._window)
        current_window, count = self._counts.get(key, (window, 0))
        if current_window != window:
            count = 0
        if count >= self._limit:
            return False
        if len(self._counts) >= self._max_keys and key not in self._counts:
            # Forget stale windows first so memory stays bounded under a key flood.
            self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        self._counts[key] = (window, count + 1)
        return True
