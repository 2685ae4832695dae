"""What to check and with which credentials: from the command line and the environment, or
the local stack's own (``make run``) when nothing is given."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from askvault_clients import ServiceCredential, SigningKey, Tls

# The services whose gRPC servers are checked, by the names GRPC= uses.
SERVICES = ("identity", "policy", "billing_gateway", "notifier")


class TargetError(ValueError):
    """The target or its credentials are incomplete; the message says what to set."""


@dataclass(frozen=True)
class Visitor:
    """The test workspace's visitor the journey runs as, proven as the workspace's backend
    would (``user_hash`` = HMAC-SHA256 of the user id with the workspace's secret)."""

    user_id: str
    email: str
    hmac_secret: bytes

    @property
    def user_hash(self) -> str:
        return hmac.new(self.hmac_secret, self.user_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Target:
    """A deployment: the edge's URL, each service's gRPC address, the credentials."""

    edge_url: str
    grpc: dict[str, str]
    workspace_id: str
    visitor: Visitor
    # The credential the RPC checks call with (a service of the skill, e.g. the edge).
    service_key: SigningKey
    admin_token: str = ""
    tls: Tls | None = None
    # The journey's refund: what the visitor types, and the reply that says it was done.
    refund_text: str = "Why was I charged twice?"
    # The local Stripe emulator, when the target runs one: the journey first puts the demo
    # customer back in its story so that the refund check can run again.
    stripe_emulator_url: str = ""

    def credential(self) -> ServiceCredential:
        return ServiceCredential(self.service_key)


def parse_grpc(value: str) -> dict[str, str]:
    """``identity=host:port,policy=host:port,...`` (every service named once)."""
    addresses: dict[str, str] = {}
    for part in filter(None, (item.strip() for item in value.split(","))):
        name, sep, address = part.partition("=")
        if not sep or name not in SERVICES or not address:
            raise TargetError(f"GRPC entries are <service>=<host:port>, services {SERVICES}")
        addresses[name] = address
    missing = [name for name in SERVICES if name not in addresses]
    if missing:
        raise TargetError(f"GRPC lacks {', '.join(missing)}")
    return addresses


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise TargetError(f"set {name} (see deploy/README.md, 'Conformance')")
    return value


def from_environment(edge_url: str, grpc: str) -> Target:
    """A deployment named on the command line, its credentials from CONFORMANCE_* variables."""
    tls_ca = os.environ.get("CONFORMANCE_TLS_CA_FILE", "")
    key_id = os.environ.get("CONFORMANCE_SERVICE_KEY_ID", "edge")
    return Target(
        edge_url=edge_url.rstrip("/"),
        grpc=parse_grpc(grpc),
        workspace_id=_env("CONFORMANCE_WORKSPACE"),
        visitor=Visitor(
            user_id=_env("CONFORMANCE_VISITOR_ID"),
            email=os.environ.get("CONFORMANCE_VISITOR_EMAIL", ""),
            hmac_secret=_env("CONFORMANCE_VISITOR_HMAC_SECRET").encode(),
        ),
        service_key=SigningKey.from_file(_env("CONFORMANCE_SERVICE_KEY_FILE"), key_id),
        admin_token=os.environ.get("CONFORMANCE_ADMIN_TOKEN", ""),
        tls=Tls(
            ca_file=tls_ca,
            cert_file=os.environ.get("CONFORMANCE_TLS_CERT_FILE", ""),
            key_file=os.environ.get("CONFORMANCE_TLS_KEY_FILE", ""),
        )
        if tls_ca
        else None,
        refund_text=os.environ.get("CONFORMANCE_REFUND_TEXT", Target.refund_text),
    )


def local(ports: dict[str, int] | None = None, data_dir: Path | None = None) -> Target:
    """The local stack (``make run``, or a test's stack on other ports): its demo workspace,
    the demo visitor bob (charged twice), the edge's service key and a local admin."""
    from devstack import config

    demo = config.load()
    port = {**{name: demo.port(name) for name in demo.raw["ports"]}, **(ports or {})}
    config.service_keys()  # made when missing, as `make run` makes them
    bob = next(v for v in demo.visitors if v["user_id"] == "bob")
    stripe_url = "" if os.environ.get("STRIPE_TEST_API_KEY") else "stripe_emulator"
    return Target(
        edge_url=f"http://127.0.0.1:{port['edge']}",
        grpc={name: f"127.0.0.1:{port[name]}" for name in SERVICES},
        workspace_id=demo.workspace_id,
        visitor=Visitor(bob["user_id"], bob["email"], demo.hmac_secret),
        service_key=SigningKey.from_file(config.service_keys_dir() / "edge.pem", "edge"),
        admin_token=config.admin_provider().issue("conformance"),
        stripe_emulator_url=f"http://127.0.0.1:{port[stripe_url]}" if stripe_url else "",
    )
