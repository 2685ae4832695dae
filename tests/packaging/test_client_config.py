"""The client package's service config and credential, in the repository's venv: reads are
retried, actions are not; round-robin; a default deadline; its credentials verify with the
servers' verifier (runtime/service_auth.py) and only as the key's own service."""

from __future__ import annotations

import json

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from askvault_clients import ServiceCredential, SigningKey, aio_channel, channels, service_config
from runtime import errors, grpc_typing, service_auth


def _retried() -> set[str]:
    config = service_config()
    names = config["methodConfig"][1]["name"]
    assert config["methodConfig"][1]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    return {f"{name['service'].rsplit('.', 1)[1]}/{name['method']}" for name in names}


def test_reads_are_retried_and_actions_are_not() -> None:
    retried = _retried()
    assert {
        "PolicyService/GetBounds",
        "IdentityService/GetVerificationKeys",
        "BillingGatewayService/ListCharges",
        "NotifierService/GetMessage",
    } <= retried
    for action in (
        "PolicyService/Authorize",
        "PolicyService/Redeem",
        "BillingGatewayService/RefundCharge",
        "BillingGatewayService/CancelSubscription",
        "NotifierService/Send",
        "IdentityService/VerifyVisitor",
    ):
        assert action not in retried


def test_round_robin_a_default_deadline_and_the_dns_resolver() -> None:
    config = service_config(timeout_seconds=2.5)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert {method["timeout"] for method in config["methodConfig"]} == {"2.500s"}
    options = dict(channels.channel_options())
    assert json.loads(str(options["grpc.service_config"])) == service_config()
    assert channels._target("policy:50062") == "dns:///policy:50062"
    assert channels._target("unix:/run/policy.sock") == "unix:/run/policy.sock"


def test_the_client_s_credential_verifies_as_its_own_service_only() -> None:
    server_side = service_auth.SigningKey.generate("edge:2")
    public = service_auth.PublicKeys.from_jwks(service_auth.jwks([server_side]))
    credential = ServiceCredential(SigningKey.from_pem(server_side.pem(), "edge:2"))
    assert public.verify(credential.token()) == "edge"
    # The same key under another service's key id names another service: refused.
    other = ServiceCredential(SigningKey.from_pem(server_side.pem(), "billing_gateway"))
    with pytest.raises(errors.ServiceError) as refused:
        public.verify(other.token())
    assert refused.value.kind is errors.Kind.UNAUTHENTICATED


def test_mutual_tls_needs_both_halves() -> None:
    with pytest.raises(ValueError, match="both"):
        channels.Tls(ca_file="ca.pem", cert_file="client.pem").credentials()
    with pytest.raises(ValueError, match="both"):
        channels.Tls(ca_file="ca.pem", key_file="client.key").credentials()


@pytest.mark.integration
async def test_a_channel_without_retries_calls() -> None:
    """``max_attempts=1`` (no retries) leaves the retry policy out: gRPC refuses one of fewer
    than two attempts and the channel then fails every call."""
    assert len(service_config(max_attempts=1)["methodConfig"]) == 1
    with pytest.raises(ValueError, match="max_attempts"):
        service_config(max_attempts=0)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{port}", max_attempts=1) as channel:
            answer = await grpc_typing.health_stub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)
