"""Admission control of a gRPC process: at most GRPC_MAX_IN_FLIGHT calls are served at once,
and a call past the bound is refused at once with RESOURCE_EXHAUSTED and the ErrorInfo reason
OVERLOADED, before it claims anything (an idempotency key, a grant, a row), so the caller's
later retry does the action once. A call whose remaining deadline is already shorter than
GRPC_MIN_DEADLINE_SECONDS is refused with DEADLINE_EXCEEDED rather than started: it could
not be answered in time, and under load such calls are the ones that pile up.

grpc.aio's own ``maximum_concurrent_rpcs`` is not used: it answers a bare RESOURCE_EXHAUSTED
(no reason, so a caller cannot tell overload from a notifier's hourly limit) and counts the
health checks too, so a saturated replica would fail its probes and be restarted, which
moves its load onto the others."""

from __future__ import annotations

from runtime import errors

# The health service is never refused: the probes of a busy replica must still be answered.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def overloaded(retry_after_seconds: int = 1) -> errors.ServiceError:
    """The refusal of a call past the bound (the caller may try again after the delay)."""
    return errors.ServiceError(
        errors.Kind.RESOURCE_EXHAUSTED,
        "OVERLOADED",
        "the service is at its limit of calls in flight; retry shortly",
        metadata={"retry_after_seconds": str(retry_after_seconds)},
    )


def too_late(remaining_seconds: float) -> errors.ServiceError:
    """The refusal of a call whose deadline leaves too little time to serve it."""
    return errors.ServiceError(
        errors.Kind.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the call's remaining deadline is too short to serve it",
        metadata={"remaining_ms": str(max(0, round(remaining_seconds * 1000)))},
    )


class Admission:
    """Counts the calls in flight of one process (one event loop: no lock is needed)."""

    def __init__(self, limit: int, min_deadline_seconds: float = 0.0) -> None:
        # 0: no bound.
        self.limit = limit
        self.min_deadline_seconds = min_deadline_seconds
        self.in_flight = 0

    def exempt(self, method: str) -> bool:
        """Whether ``method`` (the full "/package.Service/Method") is never refused."""
        return method.startswith(EXEMPT_PREFIXES)

    def try_enter(self) -> bool:
        """Takes a place, or False when every place is taken (the call is then refused)."""
        if self.limit and self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        """Gives back the place ``try_enter`` took."""
        self.in_flight -= 1

    def check_deadline(self, remaining_seconds: float | None) -> None:
        """Raises DEADLINE_EXCEEDED when the call cannot be served within its deadline."""
        if remaining_seconds is not None and remaining_seconds <= self.min_deadline_seconds:
            raise too_late(remaining_seconds)
