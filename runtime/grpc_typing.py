"""Typed views of gRPC's own stubs that typeshed's stubs leave untyped: the health and
reflection stubs declare no RPC attributes, so each call would be an error under mypy
--strict. These return the same stub objects, only typed."""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

# The servicer context of a handler, for code that handles every RPC alike.
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class HealthAsyncStub(Protocol):
    Check: grpc.aio.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]
    Watch: grpc.aio.UnaryStreamMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]


class ReflectionAsyncStub(Protocol):
    ServerReflectionInfo: grpc.aio.StreamStreamMultiCallable[
        reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
    ]


def health_stub(channel: grpc.aio.Channel) -> HealthAsyncStub:
    """``health_pb2_grpc.HealthStub(channel)``, typed."""
    return cast(HealthAsyncStub, health_pb2_grpc.HealthStub(channel))


def reflection_stub(channel: grpc.aio.Channel) -> ReflectionAsyncStub:
    """``reflection_pb2_grpc.ServerReflectionStub(channel)``, typed."""
    stub: Any = reflection_pb2_grpc.ServerReflectionStub  # typeshed: a blocking channel only
    return cast(ReflectionAsyncStub, stub(channel))
