"""Service credentials and TLS: internal RPCs only from the services allowed to call them."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import clients, errors, service_auth, testing
from tests.registry import SERVICES

SECRET = "service-token-secret-for-tests-0123456789"


def _entry(name: str) -> object:
    return next(entry for entry in SERVICES if entry.name == name)


def test_caller_policy_matrix() -> None:
    policy = service_auth.CallerPolicy(
        SECRET,
        {
            service_auth.EVERY_RPC: frozenset({"edge", "billing_gateway"}),
            "Redeem": frozenset({"billing_gateway"}),
            "ListAuditEvents": frozenset({service_auth.ADMIN}),
        },
    )
    as_edge = ((service_auth.HEADER, service_auth.issue(SECRET, "edge")),)
    as_billing = ((service_auth.HEADER, service_auth.issue(SECRET, "billing_gateway")),)
    forged = (
        (
            service_auth.HEADER,
            service_auth.issue("another-secret-0123456789abcdef-0123456789", "billing_gateway"),
        ),
    )
    method = "/askvault.policy.v1.PolicyService/"
    assert policy.check(method + "Authorize", as_edge) == "edge"
    assert policy.check(method + "Redeem", as_billing) == "billing_gateway"
    assert policy.check(method + "ListAuditEvents", ()) == ""
    assert policy.check("/grpc.health.v1.Health/Check", ()) == ""
    for metadata, rpc, kind in (
        (as_edge, "Redeem", errors.Kind.PERMISSION_DENIED),
        ((), "Authorize", errors.Kind.UNAUTHENTICATED),
        (forged, "Redeem", errors.Kind.UNAUTHENTICATED),
    ):
        with pytest.raises(errors.ServiceError) as refused:
            policy.check(method + rpc, metadata)
        assert refused.value.kind is kind


async def test_grants_are_resolved_only_by_the_enforcement_point(database_url: str) -> None:
    service, settings = _entry("policy").build(  # type: ignore[attr-defined]
        database_url, service_token_secret=SECRET
    )
    request = policy_pb2.RedeemRequest(workspace_id="ws_a", grant_id="gr_x", idempotency_key="op1")

    async def redeem_as(caller: str | None) -> tuple[grpc.StatusCode, str]:
        outgoing = clients.Outgoing(
            credential=service_auth.CachedCredential(SECRET, caller) if caller else None
        )
        channel = clients.channel(running.address, outgoing)
        try:
            await policy_pb2_grpc.PolicyServiceStub(channel).Redeem(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            code, reason, _ = testing.error_details(error)
            return code, reason
        finally:
            await channel.close()
        return grpc.StatusCode.OK, ""

    async with testing.running(service, settings) as running:
        anonymous = await redeem_as(None)
        edge = await redeem_as("edge")
        billing = await redeem_as("billing_gateway")
        async with grpc.aio.insecure_channel(running.address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            audit = await policy_pb2_grpc.PolicyServiceStub(channel).VerifyAuditChain(
                policy_pb2.VerifyAuditChainRequest(workspace_id="ws_a"),
                metadata=testing.admin_metadata(),
            )
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    assert edge == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    # Past the caller check, the grant itself is what is refused.
    assert billing[0] not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert audit.intact


def _certificate(
    subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: x509.Name | None, ca: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


async def test_mutual_tls_admits_only_clients_with_a_certificate_of_the_ca(
    database_url: str, tmp_path: Path
) -> None:
    ca_key, ca = _certificate("askvault-test-ca", None, None, ca=True)
    server_key, server_cert = _certificate("identity", ca_key, ca.subject, ca=False)
    client_key, client_cert = _certificate("policy", ca_key, ca.subject, ca=False)
    _write(tmp_path / "ca", ca_key, ca)
    _write(tmp_path / "server", server_key, server_cert)
    _write(tmp_path / "client", client_key, client_cert)
    service, settings = _entry("identity").build(  # type: ignore[attr-defined]
        database_url,
        tls_cert_file=str(tmp_path / "server.crt"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(tmp_path / "ca.crt"),
    )
    ca_pem = (tmp_path / "ca.crt").read_bytes()
    with_certificate = clients.Outgoing(
        credentials=grpc.ssl_channel_credentials(
            ca_pem, (tmp_path / "client.key").read_bytes(), (tmp_path / "client.crt").read_bytes()
        )
    )
    without_certificate = clients.Outgoing(credentials=grpc.ssl_channel_credentials(ca_pem))

    async def keys(outgoing: clients.Outgoing | None) -> grpc.StatusCode:
        channel = (
            clients.channel(f"localhost:{running.port}", outgoing)
            if outgoing
            else grpc.aio.insecure_channel(f"localhost:{running.port}")
        )
        try:
            await identity_pb2_grpc.IdentityServiceStub(channel).GetVerificationKeys(
                identity_pb2.GetVerificationKeysRequest(), timeout=3
            )
        except grpc.aio.AioRpcError as error:
            return error.code()  # type: ignore[no-any-return]
        finally:
            await channel.close()
        return grpc.StatusCode.OK

    async with testing.running(service, settings) as running:
        admitted = await keys(with_certificate)
        no_client_certificate = await keys(without_certificate)
        plaintext = await keys(None)
    assert admitted == grpc.StatusCode.OK
    assert no_client_certificate == grpc.StatusCode.UNAVAILABLE
    assert plaintext == grpc.StatusCode.UNAVAILABLE
