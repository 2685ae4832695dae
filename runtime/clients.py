"""Outgoing gRPC channels: traced, retried on UNAVAILABLE and CANCELLED (every mutating RPC
of ours is idempotent by key, so a retry is safe), with the caller's deadline passed on."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from runtime import deadlines, service_auth
from runtime.settings import ServiceSettings

_METHOD_CONFIG = [
    {
        "name": [{}],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.05s",
            "maxBackoff": "0.5s",
            "backoffMultiplier": 2,
            # CANCELLED too: a server that starts draining cancels calls it never ran. Never
            # RESOURCE_EXHAUSTED: an overloaded server (reason OVERLOADED, runtime.admission)
            # or a send limit is not helped by the same call again 50 ms later.
            "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
        },
    }
]
_SERVICE_CONFIG = json.dumps({"methodConfig": _METHOD_CONFIG})
# A ``dns:///`` target (a headless Service in Kubernetes: one address per ready pod) is
# balanced per call over every address, not per connection over the first one (pick_first).
_ROUND_ROBIN_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": _METHOD_CONFIG}
)


def service_config(target: str) -> str:
    """The channel's service config: retries, and round-robin over every resolved address
    when the target names the DNS resolver (``dns:///host:port``)."""
    return _ROUND_ROBIN_SERVICE_CONFIG if target.startswith("dns:") else _SERVICE_CONFIG


@dataclass(frozen=True)
class Outgoing:
    """How this process calls the other services: as whom, and over what transport."""

    credential: service_auth.CachedCredential | None = None
    credentials: grpc.ChannelCredentials | None = None


_outgoing = Outgoing()


def configure(
    signing_key: service_auth.SigningKey | None = None,
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
) -> None:
    """Sets, once per process (by ``runtime.server.main``), the service credential (signed
    with this service's own key) and the TLS settings every channel of this process uses."""
    global _outgoing
    credential = service_auth.CachedCredential(signing_key) if signing_key else None
    credentials = None
    if tls_ca_file:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(tls_ca_file).read_bytes(),
            private_key=Path(tls_key_file).read_bytes() if tls_key_file else None,
            certificate_chain=Path(tls_cert_file).read_bytes() if tls_cert_file else None,
        )
    _outgoing = Outgoing(credential, credentials)


def configure_from_settings(service_name: str, config: ServiceSettings) -> None:
    """``configure`` with a service's settings; raises SystemExit when its signing key is
    another service's."""
    try:
        signing_key = service_auth.load_signing_key(
            service_name,
            config.service_signing_key.get_secret_value(),
            config.service_signing_key_file,
            config.service_signing_key_id,
        )
    except ValueError as error:
        raise SystemExit(f"invalid configuration: {error}") from None
    configure(signing_key, config.tls_ca_file, config.tls_cert_file, config.tls_key_file)


class _CredentialInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds this service's credential to every call."""

    def __init__(self, credential: service_auth.CachedCredential) -> None:
        self._credential = credential

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = list(client_call_details.metadata or ())
        metadata.append((service_auth.HEADER, self._credential.token()))
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def channel(target: str, outgoing: Outgoing | None = None) -> grpc.aio.Channel:
    """A traced channel to another service of the skill, with this process's credential and
    TLS when configured (``outgoing`` overrides the process's settings, for tests)."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    config = outgoing or _outgoing
    interceptors = list(aio_client_interceptors())  # type: ignore[no-untyped-call]
    if config.credential is not None:
        interceptors.append(_CredentialInterceptor(config.credential))
    options = [
        ("grpc.service_config", service_config(target)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if config.credentials is not None:
        return grpc.aio.secure_channel(
            target, config.credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


def timeout(default_seconds: float = 5.0) -> float:
    """The timeout of an outgoing call: the default, cut to the caller's remaining deadline."""
    return deadlines.timeout(default_seconds)
