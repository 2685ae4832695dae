"""The outgoing channels' service config: round-robin over every address of a ``dns:///``
target (a headless Service's ready pods), the gRPC default (pick_first) otherwise."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime import clients, grpc_typing


def test_a_dns_target_is_balanced_round_robin_and_keeps_the_retries() -> None:
    config = json.loads(clients.service_config("dns:///policy-headless:50062"))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 3


@pytest.mark.parametrize("target", ["policy:50062", "localhost:1234", "unix:///tmp/s"])
def test_other_targets_keep_the_default_policy(target: str) -> None:
    config = json.loads(clients.service_config(target))
    assert "loadBalancingConfig" not in config
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 3


@pytest.fixture
def channel_options(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The options ``clients.channel`` gives gRPC (the real channel is still made)."""
    seen: list[Any] = []
    real = grpc.aio.insecure_channel

    def recording(target: str, options: Any = None, **kwargs: Any) -> grpc.aio.Channel:
        seen.extend(options or [])
        return real(target, options=options, **kwargs)

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording)
    return seen


@pytest.mark.integration
async def test_the_channel_of_a_dns_target_sets_round_robin_and_calls_a_real_server(
    channel_options: list[Any],
) -> None:
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        channel = clients.channel(f"dns:///127.0.0.1:{port}", clients.Outgoing())
        try:
            # gRPC core accepted the service config: an invalid one fails the call.
            reply = await grpc_typing.health_stub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        finally:
            await channel.close()
    finally:
        await server.stop(None)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    configs = [json.loads(value) for key, value in channel_options if key == "grpc.service_config"]
    assert configs and configs[0]["loadBalancingConfig"] == [{"round_robin": {}}]
