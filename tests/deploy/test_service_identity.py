"""A pod can speak only as its own service. In the local stack (``make run``) each process is
given exactly one private key, its own; and whatever one process holds, nothing it can sign
passes another service's allow-list: a real policy process, started with the environment the
local stack gives it, refuses every credential made from the notifier's environment that
claims to be the billing gateway (the only caller that may resolve grants)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from devstack import config, planning
from runtime import service_auth, testing, testing_keys
from tests.deploy import processes

pytestmark = pytest.mark.slow

PRIVATE_KEY_MARK = "PRIVATE KEY-----"
# The processes of the local stack that call or serve RPCs (the others are emulators).
SERVICES = ("identity", "policy", "notifier", "billing_gateway", "edge", "console")


@pytest.fixture
def local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    """The environment ``make run`` gives each process, with the stack's keys made under a
    temporary .data (never the developer's)."""
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    children = planning.plan(config.load(), "postgresql://unused")
    return {child.name: child.env for child in children}


def _values(env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(variable, text) of every value of an environment, and of every file a value names."""
    for name, value in env.items():
        yield name, value
        path = Path(value)
        if "\n" not in value and path.is_absolute() and path.is_file():
            yield f"{name} ({path})", path.read_text(errors="replace")


def _private_keys(env: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, text) for name, text in _values(env) if PRIVATE_KEY_MARK in text]


def _public_raw(pem: str) -> bytes:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_each_local_process_is_given_exactly_its_own_private_key(
    local_stack: dict[str, dict[str, str]],
) -> None:
    held = {name: _private_keys(env) for name, env in local_stack.items()}
    assert {name: len(keys) for name, keys in held.items()} == {
        name: 1 if name in SERVICES else 0 for name in local_stack
    }
    services = [name for name in SERVICES if name in local_stack]
    assert services == list(config.SERVICE_NAMES)
    launcher_keys = config.service_keys()  # the launcher holds every key
    for name in services:
        [(variable, pem)] = held[name]
        assert variable == "SERVICE_SIGNING_KEY", name
        assert _public_raw(pem) == _public_raw(launcher_keys[name].pem()), name
    # What every process verifies with is public keys only, one per service.
    public = json.loads(config.public_keys_file().read_text())
    assert {entry["kid"] for entry in public["keys"]} == set(config.SERVICE_NAMES)
    assert not [entry for entry in public["keys"] if "d" in entry]
    # Made once: a second start keeps the keys.
    assert config.service_keys()["policy"].pem() == launcher_keys["policy"].pem()


def _credentials_from(env: Mapping[str, str], claimed: str) -> dict[str, str]:
    """Every credential claiming to be ``claimed`` that the holder of ``env`` can make: each
    private key signs EdDSA under every plausible key id, each other value keys an HS256."""
    now = int(time.time())
    claims = {"sub": claimed, "aud": service_auth.AUDIENCE, "iat": now, "exp": now + 300}
    made: dict[str, str] = {}
    for name, text in _values(env):
        if PRIVATE_KEY_MARK in text:
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                continue
            for kid in {claimed, env.get("SERVICE_SIGNING_KEY_ID", ""), "notifier"} - {""}:
                made[f"{name} as {kid}"] = jwt.encode(
                    claims,
                    key,
                    algorithm="EdDSA",
                    headers={"kid": kid},
                )
        elif len(text) >= 16 and "\n" not in text:
            for header in ({"alg": "HS256"}, {"alg": "HS256", "kid": claimed}):
                made[f"HS256 {name} {header}"] = testing_keys.hs256(text.encode(), claims, header)
    return made


async def test_nothing_the_notifiers_process_holds_passes_for_the_billing_gateway(
    local_stack: dict[str, dict[str, str]], database_url: str
) -> None:
    env = processes.environment(
        "policy",
        database_url,
        base={**os.environ, **local_stack["policy"]},
        METRICS_PORT="0",
    )
    request = policy_pb2.RedeemRequest(workspace_id="ws_a", grant_id="gr_x", idempotency_key="op1")
    async with (
        processes.replica(processes.service_argv("policy"), env) as policy,
        grpc.aio.insecure_channel(policy.address) as channel,
    ):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)

        async def redeem(credential: str) -> grpc.StatusCode:
            try:
                await stub.Redeem(request, metadata=((service_auth.HEADER, credential),), timeout=5)
            except grpc.aio.AioRpcError as error:
                return testing.error_details(error)[0]
            return grpc.StatusCode.OK

        borrowed = {
            name: await redeem(credential)
            for name, credential in _credentials_from(
                local_stack["notifier"], "billing_gateway"
            ).items()
        }
        as_itself = {
            name: await redeem(credential)
            for name, credential in _credentials_from(local_stack["notifier"], "notifier").items()
        }
        # The control: the billing gateway's own key gets past the caller check.
        genuine = {
            name: await redeem(credential)
            for name, credential in _credentials_from(
                local_stack["billing_gateway"], "billing_gateway"
            ).items()
        }
    caller_refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert borrowed and all(code in caller_refused for code in borrowed.values()), borrowed
    # The notifier's own credential authenticates, and is not allowed to resolve grants.
    assert grpc.StatusCode.PERMISSION_DENIED in as_itself.values(), as_itself
    assert any(code not in caller_refused for code in genuine.values()), genuine
