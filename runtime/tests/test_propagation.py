"""Trace context crosses an RPC into a real service."""

from __future__ import annotations

from opentelemetry import trace

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from runtime import clients, testing
from tests.registry import SERVICES


async def test_trace_context_is_carried_into_the_server(database_url: str) -> None:
    identity = next(entry for entry in SERVICES if entry.name == "identity")
    service, settings = identity.build(database_url)
    with testing.captured_spans() as exporter:
        async with testing.running(service, settings) as running:
            channel = clients.channel(running.address)
            try:
                with trace.get_tracer("test").start_as_current_span("caller") as caller:
                    await identity_pb2_grpc.IdentityServiceStub(channel).GetVerificationKeys(
                        identity_pb2.GetVerificationKeysRequest(), timeout=5
                    )
            finally:
                await channel.close()
    trace_id = caller.get_span_context().trace_id
    server_spans = [
        span
        for span in exporter.get_finished_spans()
        if span.kind == trace.SpanKind.SERVER and "GetVerificationKeys" in span.name
    ]
    assert server_spans
    assert all(span.context.trace_id == trace_id for span in server_spans)
