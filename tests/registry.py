"""The services that exist, and how a test starts each one in-process."""

from __future__ import annotations

import base64
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime import server, testing
from runtime.settings import ServiceSettings


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class ServiceEntry:
    """How to build one service for a test."""

    name: str
    module: str
    service_class: str
    settings_module: str
    settings_class: str
    extra_settings: Callable[[], dict[str, Any]]

    def build(self, database_url: str, **overrides: Any) -> tuple[server.Service, ServiceSettings]:
        """The service and its settings on the given database, on a free port."""
        settings_type = getattr(importlib.import_module(self.settings_module), self.settings_class)
        values = {**self.extra_settings(), **overrides}
        settings = testing.make_settings(settings_type, database_url, **values)
        service_type = getattr(importlib.import_module(self.module), self.service_class)
        return service_type(settings), settings


SERVICES: list[ServiceEntry] = [
    ServiceEntry(
        "identity",
        "identity.service",
        "IdentityService",
        "identity.settings",
        "IdentitySettings",
        lambda: {
            "secrets_encryption_keys": f"k1:{_key()}",
            "assertion_signing_keys": f"a1:{_key()}",
        },
    ),
    ServiceEntry(
        "policy",
        "policy.service",
        "PolicyService",
        "policy.settings",
        "PolicySettings",
        # No identity: every assertion is refused as invalid, which the contract test expects.
        lambda: {"identity_target": "", "audit_mac_keys": f"m1:{_key()}"},
    ),
    ServiceEntry(
        "notifier",
        "notifier.service",
        "NotifierService",
        "notifier.settings",
        "NotifierSettings",
        # No workers: the contract test only calls the RPCs.
        lambda: {"worker_count": 0},
    ),
    ServiceEntry(
        "billing_gateway",
        "billing_gateway.service",
        "BillingGatewayService",
        "billing_gateway.settings",
        "BillingGatewaySettings",
        # No workers and no reachable Stripe: the contract tests only call the RPCs, and an
        # empty request is refused before any call would leave the gateway.
        lambda: {
            "secrets_encryption_keys": f"k1:{_key()}",
            "run_workers": False,
            "stripe_api_base": "http://127.0.0.1:9/stripe",
            "stripe_max_network_retries": 0,
            "stripe_timeout_seconds": 1.0,
        },
    ),
]
