"""Without PostgreSQL, policy answers UNAVAILABLE and never ALLOW."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy.domain import audit
from policy.service import PolicyService
from runtime import testing

from .conftest import AUDIT_MAC_KEYS, KEY_ID, START, Policy, TestClock, key, policy_settings


@pytest.mark.integration
async def test_database_down_means_unavailable(private_key: Ed25519PrivateKey) -> None:
    async def key_source() -> Mapping[str, Ed25519PublicKey]:
        return {KEY_ID: private_key.public_key()}

    # Nothing listens on this port (held, so nobody else takes it): every query fails.
    with testing.refused_port() as port:
        settings = policy_settings(
            f"postgresql://postgres@127.0.0.1:{port}/policy",
            migrate_on_start=False,
            database_pool_min_size=0,
        )
        clock = TestClock(START)
        service = PolicyService(settings, key_source=key_source, clock=clock)
        async with (
            testing.running(service, settings) as running,
            grpc.aio.insecure_channel(running.address) as channel,
        ):
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            harness = Policy(
                stub, running, clock, private_key, "", audit.MacKeys.parse(AUDIT_MAC_KEYS)
            )
            for request in (
                harness.refund(1000),
                harness.plan_change(),
                harness.refund(0, assertion=""),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.Authorize(request)
                assert testing.error_details(raised.value)[:2] == (
                    grpc.StatusCode.UNAVAILABLE,
                    "DATABASE_UNAVAILABLE",
                )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Commit(
                    pb.CommitRequest(workspace_id="ws_test", grant_id="gr_x", idempotency_key=key())
                )
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_identity_unreachable_means_unavailable(policy: Policy, database_url: str) -> None:
    with testing.refused_port() as port:
        settings = policy_settings(database_url, identity_target=f"127.0.0.1:{port}")
        async with (
            testing.running(PolicyService(settings), settings) as running,
            grpc.aio.insecure_channel(running.address) as channel,
        ):
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Authorize(
                    pb.AuthorizeRequest(
                        workspace_id="ws_test",
                        identity_assertion=policy.assertion(),
                        action=common_pb2.BILLING_ACTION_REFUND,
                        idempotency_key=key(),
                    )
                )
            assert testing.error_details(raised.value)[:2] == (
                grpc.StatusCode.UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
            )
    assert await policy.counter() == 0
