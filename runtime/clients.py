"""Outgoing gRPC channels: traced, retried on UNAVAILABLE and CANCELLED (every mutating RPC
of ours is idempotent by key, so a retry is safe), with the caller's deadline passed on."""

from __future__ import annotations

import json

import grpc

from runtime import deadlines

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    # CANCELLED too: a server that starts draining cancels calls it never ran.
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ]
    }
)


def channel(target: str) -> grpc.aio.Channel:
    """An insecure channel to another service of the skill (TLS is terminated by the mesh)."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
        ],
        interceptors=aio_client_interceptors(),  # type: ignore[no-untyped-call]
    )


def timeout(default_seconds: float = 5.0) -> float:
    """The timeout of an outgoing call: the default, cut to the caller's remaining deadline."""
    return deadlines.timeout(default_seconds)
