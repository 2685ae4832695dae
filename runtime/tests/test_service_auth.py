"""Service credentials and TLS: internal RPCs only from the services allowed to call them,
each service speaking with its own key and for no other."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
from pathlib import Path

import grpc
import jwt
import pydantic
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import (
    clients,
    errors,
    grpc_typing,
    service_auth,
    service_keygen,
    testing,
    testing_keys,
)
from runtime.settings import ServiceSettings
from tests.registry import SERVICES

POLICY = "/askvault.policy.v1.PolicyService/"
POLICY_CALLERS = {
    service_auth.EVERY_RPC: frozenset({"edge", "billing_gateway"}),
    "Redeem": frozenset({"billing_gateway"}),
    "ListAuditEvents": frozenset({service_auth.ADMIN}),
}
# The single key every service shared before per-service keys.
OLD_SHARED_SECRET = "service-token-secret-for-tests-0123456789"


def _entry(name: str) -> object:
    return next(entry for entry in SERVICES if entry.name == name)


def _claims(sub: str, lifetime: int = 300, issued_ago: int = 0) -> dict[str, object]:
    now = int(time.time()) - issued_ago
    return {"sub": sub, "aud": service_auth.AUDIENCE, "iat": now, "exp": now + lifetime}


def _signed(key_id: str, claims: dict[str, object], kid: str | None = None) -> str:
    """A credential signed with the test key of ``key_id``, with any claims and kid."""
    return jwt.encode(
        claims,
        testing_keys.signing_key(key_id).private_key,
        algorithm="EdDSA",
        headers={"kid": key_id if kid is None else kid},
    )


def _forgeries() -> dict[str, str]:
    """Credentials claiming to be the billing gateway that only its own key could make, made
    without it: every one must be refused as UNAUTHENTICATED."""
    billing_public = testing_keys.signing_key("billing_gateway").private_key.public_key()
    public_pem = billing_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_raw = billing_public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    public_x = testing_keys.signing_key("billing_gateway").public_jwk()["x"].encode()
    hs256 = {"alg": "HS256", "typ": "JWT", "kid": "billing_gateway"}
    claims = _claims("billing_gateway")
    return {
        # The notifier's own key, its own kid, someone else's name.
        "notifier key, sub billing_gateway": _signed("notifier", claims),
        # The notifier's key under the billing gateway's kid.
        "notifier key, kid billing_gateway": _signed("notifier", claims, kid="billing_gateway"),
        # The notifier's key under a made-up rotation kid of the billing gateway.
        "notifier key, kid billing_gateway:2": _signed("notifier", claims, "billing_gateway:2"),
        # The old scheme: HS256 with the secret all five services shared.
        "old shared-secret HS256": jwt.encode(claims, OLD_SHARED_SECRET, algorithm="HS256"),
        "old shared-secret HS256 with kid": testing_keys.hs256(
            OLD_SHARED_SECRET.encode(), claims, hs256
        ),
        # Algorithm confusion: HS256 keyed with the (public) verification key.
        "HS256 keyed with the public PEM": testing_keys.hs256(public_pem, claims, hs256),
        "HS256 keyed with the raw public key": testing_keys.hs256(public_raw, claims, hs256),
        "HS256 keyed with the JWK x": testing_keys.hs256(public_x, claims, hs256),
        "alg none": testing_keys.unsigned(claims, {"alg": "none", "kid": "billing_gateway"}),
        "no kid": _signed("billing_gateway", claims, kid=""),
        "expired": _signed("billing_gateway", _claims("billing_gateway", 300, issued_ago=400)),
        "lives a day": _signed("billing_gateway", _claims("billing_gateway", 86_400)),
        "issued in the future": _signed(
            "billing_gateway", _claims("billing_gateway", 300, issued_ago=-3600)
        ),
        "another audience": _signed("billing_gateway", {**claims, "aud": "elsewhere"}),
        "not a JWT": "billing_gateway",
        "too long": _signed("billing_gateway", {**claims, "pad": "x" * 4096}),
    }


def test_caller_policy_matrix() -> None:
    policy = service_auth.CallerPolicy(
        service_auth.PublicKeys.from_jwks(testing_keys.public_keys()), POLICY_CALLERS
    )

    def check(rpc: str, credential: str | None) -> str:
        metadata = ((service_auth.HEADER, credential),) if credential is not None else ()
        return policy.check(POLICY + rpc, metadata)

    assert check("Authorize", service_auth.issue(testing_keys.signing_key("edge"))) == "edge"
    billing = service_auth.issue(testing_keys.signing_key("billing_gateway"))
    assert check("Redeem", billing) == "billing_gateway"
    assert check("ListAuditEvents", None) == ""
    assert policy.check("/grpc.health.v1.Health/Check", ()) == ""
    for caller in ("edge", "notifier", "identity"):
        with pytest.raises(errors.ServiceError) as refused:
            check("Redeem", service_auth.issue(testing_keys.signing_key(caller)))
        assert (refused.value.kind, refused.value.reason) == (
            errors.Kind.PERMISSION_DENIED,
            "CALLER_NOT_ALLOWED",
        ), caller
    for name, forged in {"none": None, **_forgeries()}.items():
        with pytest.raises(errors.ServiceError) as refused:
            check("Redeem", forged)
        assert (refused.value.kind, refused.value.reason) == (
            errors.Kind.UNAUTHENTICATED,
            "SERVICE_CREDENTIAL_REQUIRED",
        ), name


def test_a_service_may_have_several_keys_while_it_rotates() -> None:
    both = service_auth.PublicKeys.from_jwks(
        testing_keys.public_keys("billing_gateway", "billing_gateway:2")
    )
    for key_id in ("billing_gateway", "billing_gateway:2"):
        token = service_auth.issue(testing_keys.signing_key(key_id))
        assert both.verify(token) == "billing_gateway"
    # The old key removed from the set: what it signs no longer verifies.
    new_only = service_auth.PublicKeys.from_jwks(testing_keys.public_keys("billing_gateway:2"))
    with pytest.raises(errors.ServiceError):
        new_only.verify(service_auth.issue(testing_keys.signing_key("billing_gateway")))


def test_key_sets_that_are_not_public_ed25519_keys_fail_at_start() -> None:
    jwk = testing_keys.signing_key("policy").public_jwk()
    private = OKPAlgorithm.to_jwk(testing_keys.signing_key("policy").private_key, as_dict=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    cases: dict[str, tuple[object, str]] = {
        "not JSON": ("{", "not JSON"),
        "no keys": ({"keys": []}, "must be a JWKS"),
        "a private key": ({"keys": [{**private, "kid": "policy"}]}, "private key"),
        "an RSA key": (
            {"keys": [{**json.loads(RSAAlgorithm.to_jwk(rsa_key)), "kid": "policy"}]},
            "only Ed25519",
        ),
        "a duplicate kid": ({"keys": [jwk, jwk]}, "appears twice"),
        "a malformed kid": ({"keys": [{**jwk, "kid": "Policy Service"}]}, "<service>:<label>"),
        "another algorithm": ({"keys": [{**jwk, "alg": "HS256"}]}, "alg must be EdDSA"),
    }
    for name, (document, message) in cases.items():
        text = document if isinstance(document, str) else json.dumps(document)
        with pytest.raises(ValueError, match=message):
            service_auth.PublicKeys.from_jwks(text)
        with pytest.raises(pydantic.ValidationError, match=message):
            testing.make_settings(ServiceSettings, "postgresql://unused", service_public_keys=text)
        assert name


def test_a_signing_key_is_a_private_ed25519_key_of_the_service_itself(tmp_path: Path) -> None:
    pem = testing_keys.signing_key("notifier").pem()
    (tmp_path / "notifier.pem").write_text(pem)
    loaded = service_auth.load_signing_key("notifier", "", str(tmp_path / "notifier.pem"))
    assert loaded is not None and loaded.key_id == "notifier"
    assert service_auth.load_signing_key("notifier", "", "") is None
    # A key labelled as another service's is refused by the service that would use it.
    with pytest.raises(ValueError, match="billing_gateway"):
        service_auth.load_signing_key("notifier", pem, key_id="billing_gateway")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    for bad in ("not a pem", ec_pem):
        with pytest.raises(pydantic.ValidationError):
            testing.make_settings(ServiceSettings, "postgresql://unused", service_signing_key=bad)
    with pytest.raises(pydantic.ValidationError):  # both forms at once
        testing.make_settings(
            ServiceSettings,
            "postgresql://unused",
            service_signing_key=pem,
            service_signing_key_file=str(tmp_path / "notifier.pem"),
        )


def test_keygen_adds_a_rotation_key_and_removes_the_old_one(tmp_path: Path) -> None:
    jwks_file = tmp_path / "jwks.json"
    assert service_keygen.main(["add", "policy", "--private-key", str(tmp_path / "p1.pem"),
                                "--jwks", str(jwks_file)]) == 0  # fmt: skip
    assert service_keygen.main(["add", "policy:2", "--private-key", str(tmp_path / "p2.pem"),
                                "--jwks", str(jwks_file)]) == 0  # fmt: skip
    # Never overwrites a private key, never adds a kid twice.
    assert service_keygen.main(["add", "policy:3", "--private-key", str(tmp_path / "p2.pem"),
                                "--jwks", str(jwks_file)]) == 1  # fmt: skip
    assert service_keygen.main(["add", "policy:2", "--private-key", str(tmp_path / "p4.pem"),
                                "--jwks", str(jwks_file)]) == 1  # fmt: skip
    assert (tmp_path / "p1.pem").stat().st_mode & 0o077 == 0
    first = service_auth.load_signing_key("policy", (tmp_path / "p1.pem").read_text())
    second = service_auth.load_signing_key(
        "policy", (tmp_path / "p2.pem").read_text(), "", "policy:2"
    )
    assert first is not None and second is not None
    keys = service_auth.load_public_keys("", str(jwks_file))
    assert keys is not None and set(keys.keys) == {"policy", "policy:2"}
    assert keys.verify(service_auth.issue(first)) == keys.verify(service_auth.issue(second))
    assert service_keygen.main(["remove", "policy", "--jwks", str(jwks_file)]) == 0
    keys = service_auth.load_public_keys("", str(jwks_file))
    assert keys is not None and set(keys.keys) == {"policy:2"}
    with pytest.raises(errors.ServiceError):
        keys.verify(service_auth.issue(first))


async def test_grants_are_resolved_only_by_the_enforcement_point(database_url: str) -> None:
    service, settings = _entry("policy").build(  # type: ignore[attr-defined]
        database_url, service_public_keys=testing_keys.public_keys()
    )
    request = policy_pb2.RedeemRequest(workspace_id="ws_a", grant_id="gr_x", idempotency_key="op1")

    async def redeem(metadata: tuple[tuple[str, str], ...]) -> tuple[grpc.StatusCode, str]:
        try:
            await policy_pb2_grpc.PolicyServiceStub(plain).Redeem(
                request, metadata=metadata, timeout=5
            )
        except grpc.aio.AioRpcError as error:
            code, reason, _ = testing.error_details(error)
            return code, reason
        return grpc.StatusCode.OK, ""

    async def redeem_through_channel_of(caller: str) -> tuple[grpc.StatusCode, str]:
        channel = clients.channel(running.address, testing_keys.outgoing(caller))
        try:
            await policy_pb2_grpc.PolicyServiceStub(channel).Redeem(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            code, reason, _ = testing.error_details(error)
            return code, reason
        finally:
            await channel.close()
        return grpc.StatusCode.OK, ""

    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as plain,
    ):
        anonymous = await redeem(())
        edge = await redeem_through_channel_of("edge")
        notifier = await redeem_through_channel_of("notifier")
        forged = {name: await redeem(((service_auth.HEADER, token),))
                  for name, token in _forgeries().items()}  # fmt: skip
        billing = await redeem_through_channel_of("billing_gateway")
        health = await grpc_typing.health_stub(plain).Check(health_pb2.HealthCheckRequest())
        audit = await policy_pb2_grpc.PolicyServiceStub(plain).VerifyAuditChain(
            policy_pb2.VerifyAuditChainRequest(workspace_id="ws_a"),
            metadata=testing.admin_metadata(),
        )
    assert anonymous == (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    assert edge == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    # A pod of the notifier speaks as the notifier, which may not resolve grants ...
    assert notifier == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    # ... and nothing it can make passes for the billing gateway.
    assert forged == dict.fromkeys(
        forged, (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    )
    # Past the caller check, the grant itself is what is refused.
    assert billing[0] not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert audit.intact


def _certificate(
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    issuer: x509.Name | None,
    ca: bool,
    uris: tuple[str, ...] = (),
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
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.UniformResourceIdentifier(uri) for uri in uris),
                ]
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


async def test_with_mutual_tls_a_caller_may_prove_its_name_with_its_spiffe_id(
    database_url: str, tmp_path: Path
) -> None:
    ca_key, ca = _certificate("askvault-test-ca", None, None, ca=True)
    _write(tmp_path / "ca", ca_key, ca)
    _write(tmp_path / "server", *_certificate("policy", ca_key, ca.subject, ca=False))
    domain = "test.askvault"
    identities = {
        "billing": (f"spiffe://{domain}/askvault/billing_gateway",),
        "notifier": (f"spiffe://{domain}/askvault/notifier",),
        "another trust domain": ("spiffe://elsewhere.example/askvault/billing_gateway",),
        "two SPIFFE IDs": (
            f"spiffe://{domain}/askvault/notifier",
            f"spiffe://{domain}/askvault/billing_gateway",
        ),
        "another path": (f"spiffe://{domain}/billing_gateway",),
        "no SPIFFE ID": (),
    }
    for name, uris in identities.items():
        _write(tmp_path / name, *_certificate(name, ca_key, ca.subject, ca=False, uris=uris))
    service, settings = _entry("policy").build(  # type: ignore[attr-defined]
        database_url,
        tls_cert_file=str(tmp_path / "server.crt"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(tmp_path / "ca.crt"),
        service_trust_domain=domain,
        service_public_keys=testing_keys.public_keys(),
    )
    request = policy_pb2.RedeemRequest(workspace_id="ws_a", grant_id="gr_x", idempotency_key="op1")

    async def redeem(certificate: str, as_service: str = "") -> tuple[grpc.StatusCode, str]:
        outgoing = clients.Outgoing(
            credential=testing_keys.outgoing(as_service).credential if as_service else None,
            credentials=grpc.ssl_channel_credentials(
                (tmp_path / "ca.crt").read_bytes(),
                (tmp_path / f"{certificate}.key").read_bytes(),
                (tmp_path / f"{certificate}.crt").read_bytes(),
            ),
        )
        channel = clients.channel(f"localhost:{running.port}", outgoing)
        try:
            await policy_pb2_grpc.PolicyServiceStub(channel).Redeem(request, timeout=5)
        except grpc.aio.AioRpcError as error:
            code, reason, _ = testing.error_details(error)
            return code, reason
        finally:
            await channel.close()
        return grpc.StatusCode.OK, ""

    async with testing.running(service, settings) as running:
        by_certificate = {name: await redeem(name) for name in identities}
        notifier_certificate_billing_credential = await redeem("notifier", "billing_gateway")
        billing_credential_alone = await redeem("no SPIFFE ID", "billing_gateway")
    unauthenticated = (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED")
    caller_refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert by_certificate.pop("billing")[0] not in caller_refused
    assert by_certificate.pop("notifier") == (
        grpc.StatusCode.PERMISSION_DENIED,
        "CALLER_NOT_ALLOWED",
    )
    assert by_certificate == dict.fromkeys(by_certificate, unauthenticated)
    # A credential and a certificate that name two services: neither is believed.
    assert notifier_certificate_billing_credential == unauthenticated
    assert billing_credential_alone[0] not in caller_refused


def test_a_trust_domain_needs_mutual_tls() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs mutual TLS"):
        testing.make_settings(
            ServiceSettings, "postgresql://unused", service_trust_domain="askvault.example"
        )
    with pytest.raises(pydantic.ValidationError, match="host name"):
        testing.make_settings(
            ServiceSettings,
            "postgresql://unused",
            service_trust_domain="Askvault/Example",
            tls_client_ca_file="/unused",
        )
