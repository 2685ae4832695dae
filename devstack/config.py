"""The demo configuration file and the local keys derived for it."""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.secretbox import generate_key_spec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "demo.toml"
DATA_DIR = ROOT / ".data"


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
            "ADMIN_TOKEN_SECRET": base64.b64encode(os.urandom(32)).decode(),
            "SERVICE_TOKEN_SECRET": base64.b64encode(os.urandom(32)).decode(),
            "AUDIT_MAC_KEYS": f"local1:{base64.b64encode(os.urandom(32)).decode()}",
            "DATABASE_SERVICE_PASSWORD": base64.urlsafe_b64encode(os.urandom(24)).decode(),
        }
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        path.chmod(0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    keys = {key: value for key, value in pairs}
    # Added after the first keys files were written: extend them in place.
    added: dict[str, Callable[[], str]] = {
        "SERVICE_TOKEN_SECRET": lambda: base64.b64encode(os.urandom(32)).decode(),
        "AUDIT_MAC_KEYS": lambda: f"local1:{base64.b64encode(os.urandom(32)).decode()}",
        "DATABASE_SERVICE_PASSWORD": lambda: base64.urlsafe_b64encode(os.urandom(24)).decode(),
    }
    for name, make in added.items():
        if name not in keys:
            keys[name] = make()
            with path.open("a") as handle:
                handle.write(f"{name}={keys[name]}\n")
    return keys
