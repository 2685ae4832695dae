"""Fault injection per route: forced errors, added latency, dropped connections."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

from stripe_emulator import errors

Json = dict[str, Any]

_MESSAGES = {
    500: ("api_error", "An unknown error occurred (injected by the emulator).", None),
    503: ("api_error", "Stripe is temporarily unavailable (injected by the emulator).", None),
    429: (
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        "rate_limit",
    ),
}


@dataclass
class Fault:
    """One rule. `route` is `METHOD /path` or `/path`, with `*` wildcards (fnmatch)."""

    route: str
    status: int | None = None
    should_retry: bool | None = None
    latency_ms: int = 0
    drop: bool = False
    # How many matching requests it affects; None means until cleared.
    times: int | None = None
    id: int = 0

    def matches(self, method: str, path: str) -> bool:
        rule_method, _, rule_path = (
            self.route.partition(" ") if " " in self.route else ("", "", self.route)
        )
        if rule_method and rule_method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, rule_path)

    def error(self) -> errors.StripeError:
        assert self.status is not None
        error_type, message, code = _MESSAGES.get(
            self.status, ("api_error", f"Injected HTTP {self.status}.", None)
        )
        headers = {}
        if self.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry else "false"
        return errors.StripeError(self.status, error_type, message, code=code, headers=headers)


class FaultTable:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Json) -> Fault:
        status = spec.get("status")
        fault = Fault(
            route=str(spec.get("route") or "*"),
            status=int(status) if status is not None else None,
            should_retry=spec.get("should_retry"),
            latency_ms=int(spec.get("latency_ms") or 0),
            drop=bool(spec.get("drop")),
            times=int(spec["times"]) if spec.get("times") is not None else None,
            id=self._next_id,
        )
        if fault.status is None and not fault.drop and not fault.latency_ms:
            raise ValueError("a fault needs status, latency_ms or drop")
        self._next_id += 1
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first rule matching this request, counting one use of it."""
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def describe(self) -> list[Json]:
        return [asdict(fault) for fault in self.faults]
