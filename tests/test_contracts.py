"""Contract tests: the protos lint and stay compatible, every server offers health and
reflection, and every RPC of an implemented service is implemented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from runtime import grpc_typing, testing, testing_keys
from tests.registry import SERVICES, ServiceEntry

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".venv" / "bin" / "buf"


@pytest.mark.integration
def test_protos_pass_buf_lint() -> None:
    result = subprocess.run(
        [str(BUF), "lint"], cwd=ROOT / "protos", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _baseline() -> str:
    """The last landed commit, which the contracts must stay compatible with."""
    return (ROOT / "protos" / "BREAKING_BASELINE").read_text().split()[0]


def _buf_breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    against = f"{ROOT / '.git'}#ref={_baseline()},subdir=protos"
    return subprocess.run(
        [str(BUF), "breaking", "--against", against],
        cwd=protos,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.integration
def test_protos_are_compatible_with_the_last_landed_commit() -> None:
    exists = subprocess.run(
        ["git", "cat-file", "-e", f"{_baseline()}^{{commit}}"], cwd=ROOT, check=False
    )
    assert exists.returncode == 0, "protos/BREAKING_BASELINE names a commit this clone lacks"
    result = _buf_breaking(ROOT / "protos")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_buf_breaking_refuses_a_renumbered_field(tmp_path: Path) -> None:
    """The check above can fail: the same comparison of a copy of the protos where one field
    of a landed message changed its number is refused."""
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    common = protos / "askvault" / "common" / "v1" / "common.proto"
    text = common.read_text()
    assert "int64 amount_minor = 1;" in text
    common.write_text(text.replace("int64 amount_minor = 1;", "int64 amount_minor = 99;"))
    result = _buf_breaking(protos)
    assert result.returncode != 0
    assert "amount_minor" in result.stdout + result.stderr


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


@pytest.mark.parametrize("entry", SERVICES, ids=lambda entry: entry.name)
async def test_with_service_keys_every_rpc_refuses_a_caller_without_credential(
    entry: ServiceEntry, database_url: str
) -> None:
    """With the service keys set, health and reflection still answer anyone (probes and
    tooling carry no credential), and every RPC of the service refuses a call that carries
    neither a service credential nor an admin's: a service left out of this list would go
    unchecked."""
    service, settings = entry.build(database_url, service_public_keys=testing_keys.public_keys())
    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        health = await grpc_typing.health_stub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        codes = {}
        for full_name in service.service_names:
            descriptor = descriptor_pool.Default().FindServiceByName(full_name)
            for method in descriptor.methods:
                codes[method.full_name] = await _call_with_empty_request(channel, full_name, method)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert codes
    assert {name: code for name, code in codes.items() if code != _UNAUTHENTICATED} == {}


_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
