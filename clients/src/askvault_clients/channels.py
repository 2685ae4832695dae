"""Channels to the skill's services with the service config every internal caller should
use: a default deadline, retries of reads on UNAVAILABLE, round-robin over every address the
target resolves to, the caller's service credential and TLS."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio

from askvault_clients import services
from askvault_clients.credentials import HEADER, ServiceCredential

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

# A deadline every call gets unless it passes its own timeout.
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Tls:
    """Server verification (``ca_file``) and, for mutual TLS, the caller's certificate."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    # The name to verify the server's certificate against, when the target's host is not it.
    server_name: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("mutual TLS needs both cert_file and key_file")
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=Path(self.key_file).read_bytes() if self.key_file else None,
            certificate_chain=Path(self.cert_file).read_bytes() if self.cert_file else None,
        )


def service_config(
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, max_attempts: int = 3
) -> dict[str, Any]:
    """The gRPC service config: round-robin balancing; every RPC a default deadline; reads
    (see ``services.read_methods``) retried on UNAVAILABLE with exponential backoff, unless
    ``max_attempts`` is 1 (gRPC refuses a retry policy of fewer than two attempts, and the
    channel would then fail every call)."""
    if max_attempts < 1:
        raise ValueError("max_attempts is at least 1")
    timeout = f"{timeout_seconds:.3f}s"
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": [{}], "timeout": timeout}],
    }
    if max_attempts > 1:
        config["methodConfig"].append(
            {
                "name": [
                    {"service": service, "method": method}
                    for service, method in services.read_methods()
                ],
                "timeout": timeout,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return config


def channel_options(
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, max_attempts: int = 3
) -> list[tuple[str, str | int]]:
    return [
        ("grpc.service_config", json.dumps(service_config(timeout_seconds, max_attempts))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
    ]


def _with_credential(
    metadata: Iterable[tuple[str, str | bytes]] | None, credential: ServiceCredential
) -> tuple[tuple[str, str | bytes], ...]:
    kept = [(key, value) for key, value in (metadata or ()) if key != HEADER]
    return (*kept, (HEADER, credential.token()))


@dataclass(frozen=True)
class _SyncCallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _SyncCredentialInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds the caller's service credential to every call of a blocking channel."""

    def __init__(self, credential: ServiceCredential) -> None:
        self._credential = credential

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = _SyncCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            _with_credential(client_call_details.metadata, self._credential),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
            client_call_details.compression,
        )
        return continuation(details, request)


class _AioCredentialInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the caller's service credential to every call of an asyncio channel."""

    def __init__(self, credential: ServiceCredential) -> None:
        self._credential = credential

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            grpc.aio.Metadata(*_with_credential(client_call_details.metadata, self._credential)),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def _target(target: str) -> str:
    # Round-robin needs every address of the name: the dns resolver, not a single address
    # picked by the OS (a headless Kubernetes Service answers with one address per pod).
    return target if "://" in target or target.startswith("unix:") else f"dns:///{target}"


def channel(
    target: str,
    *,
    credential: ServiceCredential | None = None,
    tls: Tls | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = 3,
) -> grpc.Channel:
    """A blocking channel to ``target`` (``host:port`` or a gRPC URI)."""
    options = channel_options(timeout_seconds, max_attempts)
    if tls is not None:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        base = grpc.secure_channel(_target(target), tls.credentials(), options=options)
    else:
        base = grpc.insecure_channel(_target(target), options=options)
    if credential is None:
        return base
    return grpc.intercept_channel(base, _SyncCredentialInterceptor(credential))


def aio_channel(
    target: str,
    *,
    credential: ServiceCredential | None = None,
    tls: Tls | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = 3,
) -> grpc.aio.Channel:
    """An asyncio channel to ``target`` (``host:port`` or a gRPC URI)."""
    options = channel_options(timeout_seconds, max_attempts)
    interceptors = [_AioCredentialInterceptor(credential)] if credential is not None else None
    if tls is not None:
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        return grpc.aio.secure_channel(
            _target(target), tls.credentials(), options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(_target(target), options=options, interceptors=interceptors)
