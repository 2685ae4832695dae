"""The log of API requests the emulator served, so tests and benchmarks can count what a
client asked of Stripe (e.g. that a read made no Stripe request at all)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

# The newest requests kept; older ones are dropped.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class LoggedRequest:
    """One `/v1` request: who asked what, and the status answered."""

    method: str
    path: str
    # The account the key (and Stripe-Account) acted on; "" when authentication failed.
    account: str
    status: int
    request_id: str
    at: float
    # The W3C ``traceparent`` header the client sent ("" when none): which trace made it.
    traceparent: str = ""


class RequestLog:
    """A bounded, in-memory list of served API requests."""

    def __init__(self) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=MAX_ENTRIES)

    def add(
        self,
        method: str,
        path: str,
        account: str,
        status: int,
        request_id: str,
        traceparent: str = "",
    ) -> None:
        self._entries.append(
            LoggedRequest(method, path, account, status, request_id, time.time(), traceparent)
        )

    def entries(self, account: str = "") -> list[LoggedRequest]:
        """Every logged request, oldest first (of one account when given)."""
        return [entry for entry in self._entries if not account or entry.account == account]

    def as_json(self, account: str = "") -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self.entries(account)]

    def clear(self) -> None:
        self._entries.clear()
