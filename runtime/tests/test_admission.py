"""A real gRPC server with the interceptor's bound of calls in flight: past it a call is
refused at once with RESOURCE_EXHAUSTED and the ErrorInfo reason OVERLOADED (the handler
never runs), the health service still answers, the skill's channel does not retry the
refusal, and a call whose deadline is too short to serve is refused before it starts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime import clients, grpc_typing, interceptors
from runtime.admission import Admission

pytestmark = pytest.mark.integration

SLOW = "/test.Slow/Wait"
SLOW_SECONDS = 1.0


def _reason(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason, dict(info.metadata)
    return "", {}


class _Counting(Admission):
    """The server's admission, counting the calls it refused (the retries a client made)."""

    def __init__(self, limit: int, min_deadline_seconds: float = 0.0) -> None:
        super().__init__(limit, min_deadline_seconds)
        self.refused = 0

    def try_enter(self) -> bool:
        entered = super().try_enter()
        self.refused += not entered
        return entered


@asynccontextmanager
async def _server(admission: Admission) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server whose one method holds its call for SLOW_SECONDS; yields its address and the
    requests its handler ran."""
    ran: list[bytes] = []

    async def wait(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        ran.append(request)
        await asyncio.sleep(SLOW_SECONDS)
        return request

    server = grpc.aio.server(
        interceptors=[interceptors.ServerInterceptor("test.askvault.dev", None, admission)]
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Slow", {"Wait": grpc.unary_unary_rpc_method_handler(wait)}
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", ran
    finally:
        await server.stop(None)


async def test_calls_past_the_bound_are_refused_at_once_with_the_reason() -> None:
    admission = _Counting(2)
    async with _server(admission) as (address, ran), grpc.aio.insecure_channel(address) as plain:
        # The skill's own channel (retries on UNAVAILABLE and CANCELLED): an overload refusal
        # must not be retried into the storm.
        skill_channel = clients.channel(address, clients.Outgoing())
        slow: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = plain.unary_unary(SLOW)
        held = [asyncio.ensure_future(slow(b"held", timeout=10)) for _ in range(2)]
        while len(ran) < 2:
            await asyncio.sleep(0.01)

        over: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = skill_channel.unary_unary(SLOW)
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await over(b"over", timeout=10)
        took = time.perf_counter() - started

        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, metadata = _reason(refused.value)
        assert reason == "OVERLOADED"
        assert metadata["retry_after_seconds"] == "1"
        assert took < SLOW_SECONDS / 2, took  # refused, not queued behind the held calls
        assert admission.refused == 1  # no retry of the refusal
        assert b"over" not in ran
        # The probes of a saturated server are still answered.
        answer = await grpc_typing.health_stub(plain).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

        assert await asyncio.gather(*held) == [b"held", b"held"]
        # Once the held calls are done there is room again.
        assert await slow(b"later", timeout=10) == b"later"
        await skill_channel.close()


async def test_a_call_whose_deadline_is_too_short_is_refused_before_it_runs() -> None:
    async with (
        _server(Admission(0, min_deadline_seconds=1.0)) as (address, ran),
        grpc.aio.insecure_channel(address) as channel,
    ):
        late: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(SLOW)
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await late(b"late", timeout=0.5)
        assert time.perf_counter() - started < 0.4
        assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        reason, metadata = _reason(refused.value)
        assert reason == "DEADLINE_EXCEEDED"
        assert int(metadata["remaining_ms"]) <= 500
        assert ran == []
