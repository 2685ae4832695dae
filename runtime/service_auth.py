"""Service credentials: which of the skill's services is calling.

Each service holds only its own Ed25519 private key (``SERVICE_SIGNING_KEY`` or
``SERVICE_SIGNING_KEY_FILE``) and signs a short-lived credential naming itself; every
verifier holds only public keys, a JWKS (``SERVICE_PUBLIC_KEYS`` or
``SERVICE_PUBLIC_KEYS_FILE``). So a pod that is taken over can speak as its own service and
as no other: the private key of ``billing_gateway`` is in the billing gateway's pods only.

Key ids: ``<service>`` or ``<service>:<label>`` (``billing_gateway``, ``billing_gateway:2``).
The part before the first colon is the service the key speaks for; the label tells apart the
keys of one service during a rotation. A credential verifies only with the public key its
``kid`` names, and only when that key's service is the credential's ``sub``.

With public keys configured, every call between services must carry
``x-askvault-service: <EdDSA JWT naming the caller>`` and each server refuses RPCs from
services that are not allowed to call them (health and reflection stay open for probes;
admin RPCs are called by people with an admin credential, which the servicer checks).
Without public keys the check is off. Mutual TLS (``TLS_CLIENT_CA_FILE``) can be on as well,
and with ``SERVICE_TRUST_DOMAIN`` a caller may instead prove its name with its client
certificate's SPIFFE ID, ``spiffe://<trust domain>/askvault/<service>``.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from runtime import errors

HEADER = "x-askvault-service"
AUDIENCE = "askvault-internal"
ALGORITHM = "EdDSA"
# In an allow-list: the RPC is called by admins with their own credential, not by services.
ADMIN = "admin"
# The service a call was verified to come from, set by the server's interceptor for the
# handler: None when service credentials are not checked here, "" for a call that came with
# none to an RPC that admins may call (the servicer must then check the admin's credential).
verified_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "askvault_verified_caller", default=None
)


def called_by_admin() -> bool:
    """Whether this call reached an RPC open to services and admins without a service's
    credential: it is an admin's call, whose credential the servicer must verify."""
    return verified_caller.get() == ""


# The key of an allow-list entry that applies to every RPC without its own entry.
EVERY_RPC = "*"
_OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")

# Lifetime of the credentials a service issues, and the longest one a verifier accepts: a
# credential copied from a call stays useful for minutes, not days.
TTL_SECONDS = 600
MAX_LIFETIME_SECONDS = 600
# Clock difference tolerated between two pods, in seconds.
LEEWAY_SECONDS = 30
# A credential longer than this is not ours; refusing early bounds the work.
MAX_CREDENTIAL_LENGTH = 2048

_KEY_ID = re.compile(r"^([a-z][a-z0-9_]{0,62})(?::([A-Za-z0-9._-]{1,64}))?$")


def service_of(key_id: str) -> str:
    """The service a key id speaks for (``billing_gateway:2`` -> ``billing_gateway``); raises
    ValueError for a malformed key id."""
    match = _KEY_ID.match(key_id)
    if match is None:
        raise ValueError(
            f"key id {key_id!r} is not <service> or <service>:<label> (lower-case service name)"
        )
    return match.group(1)


@dataclass(frozen=True)
class SigningKey:
    """A service's own private key and the id its public key has in the JWKS."""

    key_id: str
    private_key: ed25519.Ed25519PrivateKey

    @property
    def service(self) -> str:
        return service_of(self.key_id)

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        service_of(key_id)
        return cls(key_id, ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str | bytes, key_id: str) -> SigningKey:
        """Raises ValueError unless ``pem`` is an unencrypted Ed25519 private key."""
        service_of(key_id)
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"not a PEM private key without password: {error}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the service signing key must be an Ed25519 key")
        return cls(key_id, key)

    def pem(self) -> str:
        """The private key as PKCS#8 PEM (what SERVICE_SIGNING_KEY takes)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK with this key's id (an entry of SERVICE_PUBLIC_KEYS)."""
        jwk: dict[str, str] = OKPAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.key_id, "alg": ALGORITHM, "use": "sig"}


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """The public JWKS of some signing keys."""
    return {"keys": [key.public_jwk() for key in keys]}


def issue(key: SigningKey, ttl_seconds: int = TTL_SECONDS) -> str:
    """A credential of the key's service, signed with its private key."""
    now = int(time.time())
    claims = {"sub": key.service, "aud": AUDIENCE, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.key_id})


class CachedCredential:
    """A credential re-issued when half its life is gone, so calls don't sign each time."""

    def __init__(self, key: SigningKey, ttl_seconds: int = TTL_SECONDS) -> None:
        self._key = key
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = issue(self._key, self._ttl)
            self._renew_at = now + self._ttl / 2
        return self._token


def _unauthenticated(message: str) -> errors.ServiceError:
    return errors.ServiceError(errors.Kind.UNAUTHENTICATED, "SERVICE_CREDENTIAL_REQUIRED", message)


@dataclass(frozen=True)
class PublicKeys:
    """The public keys of the skill's services, by key id (a JWKS, parsed)."""

    keys: Mapping[str, ed25519.Ed25519PublicKey]

    @classmethod
    def from_jwks(cls, document: str | Mapping[str, Any]) -> PublicKeys:
        """Raises ValueError for anything but a JWKS of Ed25519 public keys with distinct,
        well-formed key ids (a private key in it is an error: verifiers hold no private key)."""
        try:
            parsed = json.loads(document) if isinstance(document, str) else document
        except json.JSONDecodeError as error:
            raise ValueError(f"the service public keys are not JSON: {error}") from None
        entries = parsed.get("keys") if isinstance(parsed, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError('the service public keys must be a JWKS: {"keys": [...]}')
        keys: dict[str, ed25519.Ed25519PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise ValueError("every entry of the JWKS must be a JWK object")
            key_id = str(entry.get("kid", ""))
            service_of(key_id)
            if "d" in entry:
                raise ValueError(f"{key_id}: the public keys hold a private key; remove 'd'")
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                raise ValueError(f"{key_id}: only Ed25519 keys (kty OKP, crv Ed25519)")
            if entry.get("alg", ALGORITHM) != ALGORITHM:
                raise ValueError(f"{key_id}: alg must be {ALGORITHM}")
            if key_id in keys:
                raise ValueError(f"{key_id}: the key id appears twice")
            try:
                key = OKPAlgorithm.from_jwk(dict(entry))
            except jwt.PyJWTError as error:
                raise ValueError(f"{key_id}: not a valid Ed25519 JWK: {error}") from None
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise ValueError(f"{key_id}: not an Ed25519 public key")
            keys[key_id] = key
        return cls(keys)

    def verify(self, token: str) -> str:
        """The name of the service that signed the credential, or raises UNAUTHENTICATED."""
        if len(token) > MAX_CREDENTIAL_LENGTH:
            raise _unauthenticated("the service credential is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthenticated("the service credential is not a JWT") from None
        key = self.keys.get(str(header.get("kid", "")))
        # Only EdDSA with the one key the credential names: an HS256 token, whatever its
        # secret (a public key included), or "none" never reaches a key.
        if key is None or header.get("alg") != ALGORITHM:
            raise _unauthenticated("the service credential names no known key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "aud"]},
            )
        except jwt.PyJWTError:
            raise _unauthenticated("the service credential does not verify") from None
        caller = claims["sub"]
        lifetime = claims["exp"] - claims["iat"]
        if not isinstance(lifetime, int) or lifetime > MAX_LIFETIME_SECONDS:
            raise _unauthenticated("the service credential lives too long")
        # The key of one service cannot speak for another.
        if caller != service_of(str(header["kid"])):
            raise _unauthenticated("the service credential names another service than its key")
        return str(caller)


# The path of a service's SPIFFE ID under its trust domain: spiffe://<domain>/askvault/<name>.
SPIFFE_PATH_PREFIX = "/askvault/"
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@functools.lru_cache(maxsize=256)
def certificate_service(pem: bytes, trust_domain: str) -> str:
    """The service a client certificate names by its SPIFFE ID (its one URI SAN,
    ``spiffe://<trust domain>/askvault/<service>``), or "" when it names none: no URI SAN,
    several (an X.509 SVID has exactly one), another trust domain, another path."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return ""
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        return ""
    uri = urllib.parse.urlsplit(uris[0])
    if (uri.scheme, uri.netloc, uri.query, uri.fragment) != ("spiffe", trust_domain, "", ""):
        return ""
    if not uri.path.startswith(SPIFFE_PATH_PREFIX):
        return ""
    service = uri.path[len(SPIFFE_PATH_PREFIX) :]
    return service if _SERVICE_NAME.match(service) else ""


@dataclass(frozen=True)
class CallerPolicy:
    """Which services may call which RPC of a server: ``{"Redeem": {"billing_gateway"},
    "*": {"edge", "billing_gateway"}}``; method names without the service prefix.

    A caller proves its name with a credential signed by its own key (``public_keys``) or,
    when ``trust_domain`` is set (only with mutual TLS, whose handshake verified the chain),
    with the SPIFFE ID of its client certificate; with both, they must name one service."""

    public_keys: PublicKeys | None
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    trust_domain: str = ""

    def check(
        self,
        full_method: str,
        metadata: object,
        auth_context: Mapping[str, Iterable[bytes]] | None = None,
    ) -> str:
        """The caller's name, or raises UNAUTHENTICATED / PERMISSION_DENIED. Open services
        and admin RPCs answer "". An RPC whose list holds services and ADMIN answers "" to a
        call without a service's credential (an admin's: the servicer checks the admin's own
        credential, see ``called_by_admin``), and to a call by a service not on the list."""
        service, _, method = full_method.lstrip("/").partition("/")
        if service.startswith(_OPEN_SERVICES):
            return ""
        allowed = self.allowed.get(method, self.allowed.get(EVERY_RPC, frozenset()))
        if allowed == {ADMIN}:
            return ""
        token = _header(metadata)
        certified = self._certificate_caller(auth_context)
        if ADMIN in allowed and not token and not certified:
            return ""
        if token:
            if self.public_keys is None:
                raise _unauthenticated("service credentials are not verified here")
            caller = self.public_keys.verify(token)
            if certified and certified != caller:
                raise _unauthenticated("the credential and the certificate name two services")
        elif certified:
            caller = certified
        else:
            raise _unauthenticated("a service credential is required")
        if caller not in allowed:
            if ADMIN in allowed:
                # A service the RPC does not serve (the owner's console) gets no more than a
                # caller without a credential: the admin's own credential, checked by the
                # servicer, decides.
                return ""
            raise errors.ServiceError(
                errors.Kind.PERMISSION_DENIED,
                "CALLER_NOT_ALLOWED",
                f"{caller} may not call {method}",
                metadata={"caller": caller},
            )
        return caller

    def _certificate_caller(self, auth_context: Mapping[str, Iterable[bytes]] | None) -> str:
        if not self.trust_domain or not auth_context:
            return ""
        certificates = list(auth_context.get("x509_pem_cert", ()))
        if len(certificates) != 1:
            return ""
        return certificate_service(bytes(certificates[0]), self.trust_domain)


def _header(metadata: object) -> str:
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == HEADER and isinstance(value, str):
            return value
    return ""


def _one_of(inline: str, path: str, what: str) -> str:
    if inline and path:
        raise ValueError(f"set {what} or {what}_FILE, not both")
    return Path(path).read_text() if path else inline


def load_signing_key(
    service_name: str, pem: str, pem_file: str = "", key_id: str = ""
) -> SigningKey | None:
    """The signing key of SERVICE_SIGNING_KEY / SERVICE_SIGNING_KEY_FILE with the key id of
    SERVICE_SIGNING_KEY_ID (default: the service's name); None when neither is set. Raises
    ValueError when invalid or when the key id is another service's."""
    text = _one_of(pem, pem_file, "SERVICE_SIGNING_KEY")
    if not text.strip():
        return None
    key = SigningKey.from_pem(text, key_id or service_name)
    if key.service != service_name:
        raise ValueError(
            f"SERVICE_SIGNING_KEY_ID {key.key_id!r} is a key of {key.service}, not {service_name}"
        )
    return key


def load_public_keys(document: str, document_file: str) -> PublicKeys | None:
    """The JWKS of SERVICE_PUBLIC_KEYS / SERVICE_PUBLIC_KEYS_FILE; None when neither is set
    (the check is off). Raises ValueError when invalid."""
    text = _one_of(document, document_file, "SERVICE_PUBLIC_KEYS")
    return PublicKeys.from_jwks(text) if text.strip() else None
