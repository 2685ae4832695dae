"""The client package's channels over mutual TLS to a real policy server: with the caller's
certificate and service credential the call goes through; without a client certificate, or
in plaintext, the handshake refuses it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from askvault_clients import ServiceCredential, SigningKey, Tls, aio_channel
from runtime import service_auth, testing
from tests.packaging import servers


def _issue(
    path: Path, subject: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer, issuer_name = issuer or (key, name)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    certificate = builder.sign(signer, hashes.SHA256())
    path.with_suffix(".crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, name


async def test_mutual_tls_with_the_callers_certificate_and_credential(
    database_url: str, tmp_path: Path
) -> None:
    ca = _issue(tmp_path / "ca", "askvault-test-ca", None)
    _issue(tmp_path / "server", "policy", ca)
    _issue(tmp_path / "client", "edge", ca)
    edge_key = service_auth.SigningKey.generate("edge")
    service, settings = await servers.policy(
        database_url,
        service_public_keys=json.dumps(service_auth.jwks([edge_key])),
        tls_cert_file=str(tmp_path / "server.crt"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(tmp_path / "ca.crt"),
    )
    credential = ServiceCredential(SigningKey.from_pem(edge_key.pem(), "edge"))
    ca_file = str(tmp_path / "ca.crt")
    mutual = Tls(ca_file, str(tmp_path / "client.crt"), str(tmp_path / "client.key"))

    async def get_bounds(target: str, tls: Tls | None) -> grpc.StatusCode:
        async with aio_channel(target, credential=credential, tls=tls) as channel:
            try:
                await policy_pb2_grpc.PolicyServiceStub(channel).GetBounds(
                    policy_pb2.GetBoundsRequest(workspace_id="ws_test"), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    async with testing.running(service, settings) as running:
        target = f"127.0.0.1:{running.port}"
        admitted = await get_bounds(target, mutual)
        without_client_certificate = await get_bounds(target, Tls(ca_file))
        plaintext = await get_bounds(target, None)
    assert admitted == grpc.StatusCode.OK
    assert without_client_certificate == grpc.StatusCode.UNAVAILABLE
    assert plaintext == grpc.StatusCode.UNAVAILABLE
