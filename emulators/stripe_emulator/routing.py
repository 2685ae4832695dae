"""A small router for the `/v1` API: Stripe paths to synchronous handlers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stripe_emulator import params
from stripe_emulator.state import Account, State

Json = dict[str, Any]


@dataclass
class Call:
    """One API call as a handler sees it."""

    state: State
    account: Account
    params: params.Params
    path_args: dict[str, str]
    request_id: str
    idempotency_key: str | None

    def arg(self, name: str) -> str:
        return self.path_args[name]


Handler = Callable[[Call], Json]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str) -> Callable[[Handler], Handler]:
        """Register `handler` for `template`, where `{name}` matches one path segment."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        pattern = re.compile(f"^{regex}$")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, pattern, template, handler))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None
