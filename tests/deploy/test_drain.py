"""SIGTERM under load, as Kubernetes stops a pod: health flips to NOT_SERVING, every call the
server accepted completes, and calls made after it stopped accepting fail fast with
UNAVAILABLE (never hang, never a lost or cancelled call)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.deploy import processes

pytestmark = pytest.mark.slow

CLIENTS = 8


@dataclass
class Call:
    started: float
    code: grpc.StatusCode


async def _load(
    channel: grpc.aio.Channel, service: str, calls: list[Call], stop: asyncio.Event
) -> None:
    """Calls back to back until the server refuses one (or the test says stop)."""
    loop = asyncio.get_running_loop()
    read = processes.READ_CALLS[service]
    while not stop.is_set():
        started = loop.time()
        try:
            await read(channel)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            code = error.code()
        calls.append(Call(started, code))
        if code == grpc.StatusCode.UNAVAILABLE:
            return


@pytest.mark.parametrize("service", sorted(processes.READ_CALLS))
async def test_sigterm_under_load_drains_without_losing_a_call(
    service: str, database_url: str
) -> None:
    loop = asyncio.get_running_loop()
    env = processes.environment(
        service,
        database_url,
        # Long enough for the health poll below to see NOT_SERVING on a loaded machine.
        SHUTDOWN_DELAY_SECONDS="3",
        SHUTDOWN_GRACE_SECONDS="5",
    )
    calls: list[Call] = []
    stop = asyncio.Event()
    async with processes.replica(processes.service_argv(service), env) as replica:
        channels = [grpc.aio.insecure_channel(replica.address) for _ in range(CLIENTS)]
        clients = [
            asyncio.create_task(_load(channel, service, calls, stop)) for channel in channels
        ]
        try:
            warm_up_until = loop.time() + 30
            while sum(call.code == grpc.StatusCode.OK for call in calls) < 50:
                assert not any(client.done() for client in clients), calls[-5:]
                assert loop.time() < warm_up_until, {call.code for call in calls}
                await asyncio.sleep(0.05)
            sigterm_at = loop.time()
            replica.process.send_signal(signal.SIGTERM)
            not_serving_at = None
            give_up = loop.time() + 15
            while (
                not_serving_at is None
                and replica.process.returncode is None
                and loop.time() < give_up
            ):
                # The time the poll was sent: every call started before it was accepted
                # before NOT_SERVING was published.
                polled_at = loop.time()
                try:
                    status = await processes.health_status(replica.address)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        continue  # a slow answer, not a stopped server
                    break
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    not_serving_at = polled_at
                await asyncio.sleep(0.02)
            exit_code = await asyncio.wait_for(replica.process.wait(), 30)
            # Every client ends on its own once refused; a hanging call would time out here.
            await asyncio.wait_for(asyncio.gather(*clients), 30)
        finally:
            stop.set()
            for client in clients:
                client.cancel()
            for channel in channels:
                await channel.close()

    assert exit_code == 0
    assert not_serving_at is not None, "health never answered NOT_SERVING while draining"
    accepted = [call for call in calls if call.started < not_serving_at]
    refused = [call for call in calls if call.code == grpc.StatusCode.UNAVAILABLE]
    # A call that reaches the server in the very instant grpc's server.stop() begins (after
    # the drain delay) is cancelled by grpc-core (CANCELLED) instead of refused; it was never
    # processed. Known limitation, reported in deploy/README.md ("Draining"); it can only hit
    # calls started after NOT_SERVING was published, which the assertions below pin down.
    at_stop = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    failed = [call for call in calls if call.code not in (grpc.StatusCode.OK, *at_stop)]
    # No call timed out or broke: everything accepted before NOT_SERVING was answered.
    assert failed == [], [(c.started - sigterm_at, c.code) for c in failed]
    assert all(call.code == grpc.StatusCode.OK for call in accepted)
    cancelled = [call for call in calls if call.code == grpc.StatusCode.CANCELLED]
    assert all(call.started > not_serving_at for call in cancelled)
    # Calls kept being answered after SIGTERM (the drain delay), not cut off at the signal.
    assert any(c.started > sigterm_at and c.code == grpc.StatusCode.OK for c in calls)
    # Refusals came only once shutdown had begun, and every client was refused, not hung.
    assert refused and all(call.started > not_serving_at for call in refused)
    # Every client ended on a refusal (UNAVAILABLE) rather than hanging.
    assert len(refused) == CLIENTS
