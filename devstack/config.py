"""The demo configuration file and the local keys derived for it."""

from __future__ import annotations

import base64
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import service_auth
from runtime.local_identity_provider import LocalIdentityProvider
from runtime.secretbox import generate_key_spec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "demo.toml"
DATA_DIR = ROOT / ".data"
# The local stack's identity provider: who signs admin credentials for `make run`.
ADMIN_ISSUER = "https://devstack.askvault.local/"
ADMIN_PROVIDER_DIR = DATA_DIR / "admin-idp"


@dataclass(frozen=True)
class DemoConfig:
    """config/demo.toml, parsed."""

    raw: dict[str, Any]

    @property
    def workspace_id(self) -> str:
        return str(self.raw["workspace"]["id"])

    @property
    def hmac_key_id(self) -> str:
        return str(self.raw["workspace"]["hmac"]["key_id"])

    @property
    def hmac_secret(self) -> bytes:
        return str(self.raw["workspace"]["hmac"]["secret"]).encode()

    @property
    def token_key_id(self) -> str:
        """The visitor-token key's id; empty when the workspace signs no tokens."""
        return str(self.raw["workspace"].get("token", {}).get("key_id", ""))

    @property
    def token_secret(self) -> bytes:
        return str(self.raw["workspace"].get("token", {}).get("secret", "")).encode()

    @property
    def customer_metadata_key(self) -> str:
        return str(self.raw["workspace"].get("identity", {}).get("customer_metadata_key", ""))

    def port(self, name: str) -> int:
        return int(self.raw["ports"][name])

    @property
    def visitors(self) -> list[dict[str, str]]:
        return list(self.raw.get("visitors", []))


def load(path: Path = DEFAULT_CONFIG) -> DemoConfig:
    """Reads the demo configuration."""
    with path.open("rb") as handle:
        return DemoConfig(tomllib.load(handle))


def local_keys() -> dict[str, str]:
    """Keys of the local stack, made once and kept in .data/local-keys.env so that what was
    encrypted by one run opens in the next."""
    path = DATA_DIR / "local-keys.env"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        values = {
            "SECRETS_ENCRYPTION_KEYS": generate_key_spec("local1"),
            "ASSERTION_SIGNING_KEYS": f"local1:{base64.b64encode(os.urandom(32)).decode()}",
            "AUDIT_MAC_KEYS": f"local1:{base64.b64encode(os.urandom(32)).decode()}",
            "DATABASE_SERVICE_PASSWORD": base64.urlsafe_b64encode(os.urandom(24)).decode(),
        }
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        path.chmod(0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    keys = {key: value for key, value in pairs}
    # Added after the first keys files were written: extend them in place.
    added: dict[str, Callable[[], str]] = {
        "AUDIT_MAC_KEYS": lambda: f"local1:{base64.b64encode(os.urandom(32)).decode()}",
        "DATABASE_SERVICE_PASSWORD": lambda: base64.urlsafe_b64encode(os.urandom(24)).decode(),
        # The console's session cookie key (a Fernet key).
        "CONSOLE_SESSION_KEYS": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    for name, make in added.items():
        if name not in keys:
            keys[name] = make()
            with path.open("a") as handle:
                handle.write(f"{name}={keys[name]}\n")
    return keys


# The local stack's service keys: one private key per service (<service>.pem) and the public
# keys of all of them (jwks.json), made once.
SERVICE_KEYS_DIR = "service-keys"
# The processes of the stack that call or serve with service credentials.
SERVICE_NAMES = ("identity", "policy", "notifier", "billing_gateway", "edge", "console")


def service_keys_dir() -> Path:
    return DATA_DIR / SERVICE_KEYS_DIR


def public_keys_file() -> Path:
    """The JWKS every process of the local stack verifies service credentials with."""
    return service_keys_dir() / "jwks.json"


def service_keys() -> dict[str, service_auth.SigningKey]:
    """The private key of each service (made when missing; kept across runs), with the JWKS
    file rewritten to hold exactly their public keys. Only the launcher holds all of them;
    each process is given its own."""
    directory = service_keys_dir()
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    keys: dict[str, service_auth.SigningKey] = {}
    for service in SERVICE_NAMES:
        path = directory / f"{service}.pem"
        if path.exists():
            keys[service] = service_auth.SigningKey.from_pem(path.read_bytes(), service)
            continue
        keys[service] = service_auth.SigningKey.generate(service)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(keys[service].pem())
    public = json.dumps(service_auth.jwks(keys.values()), indent=2) + "\n"
    if not public_keys_file().exists() or public_keys_file().read_text() != public:
        public_keys_file().write_text(public)
    return keys


def admin_provider() -> LocalIdentityProvider:
    """The local stack's identity provider: its key stays in .data/admin-idp (only the
    launcher and `devstack.token` read it); the services get its JWKS file."""
    return LocalIdentityProvider.load_or_create(ADMIN_PROVIDER_DIR, ADMIN_ISSUER)


def admin_environment() -> dict[str, str]:
    """What the services need to verify the local provider's credentials."""
    provider = admin_provider()
    return {
        "ADMIN_ISSUER": provider.issuer,
        "ADMIN_JWKS_FILE": str(ADMIN_PROVIDER_DIR / "jwks.json"),
    }
