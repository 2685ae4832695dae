"""Contract tests: the protos lint and stay compatible, every server offers health and
reflection, and every RPC of an implemented service is implemented."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from runtime import grpc_typing, testing
from tests.registry import SERVICES, ServiceEntry

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".venv" / "bin" / "buf"


@pytest.mark.integration
def test_protos_pass_buf_lint() -> None:
    result = subprocess.run(
        [str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_protos_are_compatible_with_main() -> None:
    has_main = subprocess.run(
        ["git", "cat-file", "-e", "main:protos/buf.yaml"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    against = "../.git#branch=main,subdir=protos" if has_main.returncode == 0 else "."
    result = subprocess.run(
        [str(BUF), "breaking", "--against", against],
        cwd=ROOT / "protos",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def _call_with_empty_request(
    channel: grpc.aio.Channel, service_name: str, method: object
) -> grpc.StatusCode:
    request_type = message_factory.GetMessageClass(method.input_type)  # type: ignore[attr-defined]
    response_type = message_factory.GetMessageClass(method.output_type)  # type: ignore[attr-defined]
    call = channel.unary_unary(
        f"/{service_name}/{method.name}",  # type: ignore[attr-defined]
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        await call(request_type(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("entry", SERVICES, ids=lambda entry: entry.name)
async def test_every_rpc_is_implemented_and_reflected(
    entry: ServiceEntry, database_url: str
) -> None:
    service, settings = entry.build(database_url)
    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        health = await grpc_typing.health_stub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        reflection = grpc_typing.reflection_stub(channel)
        replies = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        listed = {s.name async for r in replies for s in r.list_services_response.service}
        codes = {}
        for full_name in service.service_names:
            descriptor = descriptor_pool.Default().FindServiceByName(full_name)
            for method in descriptor.methods:
                codes[method.full_name] = await _call_with_empty_request(channel, full_name, method)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert set(service.service_names) <= listed
    # An empty request must be answered or refused for a reason, never as unknown.
    unanswered = {
        name: code
        for name, code in codes.items()
        if code
        in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    }
    assert codes
    assert unanswered == {}
