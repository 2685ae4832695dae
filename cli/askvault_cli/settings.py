"""Where the CLI finds its credential, its workspace and the services.

Nothing here imports service code or devstack: the defaults are the local stack's ports
(config/demo.toml, checked by a test), overridden by ``ASKVAULT_<SERVICE>_ADDR``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from askvault_cli.failures import CliError, ExitCode

# The local stack's gRPC ports (config/demo.toml [ports]).
DEFAULT_PORTS = {"identity": 50061, "policy": 50062, "billing_gateway": 50063, "notifier": 50064}
# Seconds a call may take; an unreachable service fails at once (no wait for readiness).
DEFAULT_TIMEOUT_SECONDS = 10.0

TOKEN_ENV = "ASKVAULT_ADMIN_TOKEN"  # noqa: S105 - a variable name
TOKEN_FILE_ENV = "ASKVAULT_ADMIN_TOKEN_FILE"  # noqa: S105 - a variable name
WORKSPACE_ENV = "ASKVAULT_WORKSPACE"
CONFIG_DIR_ENV = "ASKVAULT_CONFIG_DIR"
TLS_CA_ENV = "ASKVAULT_TLS_CA_FILE"
TIMEOUT_ENV = "ASKVAULT_TIMEOUT"


def address_env(service: str) -> str:
    """``ASKVAULT_POLICY_ADDR``, ``ASKVAULT_BILLING_GATEWAY_ADDR``, ..."""
    return f"ASKVAULT_{service.upper()}_ADDR"


def address(service: str) -> str:
    """host:port of a service: its environment variable, else the local stack's port."""
    return os.environ.get(address_env(service)) or f"127.0.0.1:{DEFAULT_PORTS[service]}"


def config_dir() -> Path:
    """Where ``askvault login`` keeps the credential: ASKVAULT_CONFIG_DIR, else
    $XDG_CONFIG_HOME/askvault, else ~/.config/askvault."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "askvault"


def stored_token_file() -> Path:
    return config_dir() / "token"


def store_token(token: str) -> Path:
    """Writes the credential readable by its owner only (0600, replaced atomically)."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = stored_token_file()
    partial = path.with_suffix(".tmp")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    partial.replace(path)
    return path


@dataclass(frozen=True)
class Options:
    """The global options of one invocation."""

    token: str | None = None
    token_file: Path | None = None
    workspace: str | None = None
    json_output: bool = False
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    ca_file: str | None = None

    def workspace_id(self) -> str:
        workspace = self.workspace or os.environ.get(WORKSPACE_ENV, "")
        if not workspace:
            raise CliError(
                f"no workspace: pass --workspace or set {WORKSPACE_ENV}",
                ExitCode.USAGE,
                reason="NO_WORKSPACE",
            )
        return workspace

    def credential(self) -> str:
        """The admin credential, the first of: --token, --token-file, $ASKVAULT_ADMIN_TOKEN,
        $ASKVAULT_ADMIN_TOKEN_FILE, the one `askvault login` stored. An expired one is
        refused here, before any call."""
        token, source = self._given()
        if not token:
            raise CliError(
                f"the admin credential from {source} is empty",
                ExitCode.NO_CREDENTIALS,
                reason="NO_CREDENTIALS",
            )
        _refuse_expired(token, source)
        return token

    def _given(self) -> tuple[str, str]:
        """(the credential, where it came from)."""
        if self.token:
            return self.token, "--token"
        if self.token_file is not None:
            return _read(self.token_file), str(self.token_file)
        if os.environ.get(TOKEN_ENV):
            return os.environ[TOKEN_ENV], TOKEN_ENV
        path = _path_or_none(os.environ.get(TOKEN_FILE_ENV))
        if path is None and stored_token_file().exists():
            path = stored_token_file()
        if path is None:
            raise CliError(
                "no admin credential: pass --token or --token-file, set "
                f"{TOKEN_ENV}, or run `askvault login`",
                ExitCode.NO_CREDENTIALS,
                reason="NO_CREDENTIALS",
            )
        return _read(path), str(path)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as error:
        raise CliError(
            f"cannot read the admin credential from {path}: {error.strerror}",
            ExitCode.NO_CREDENTIALS,
            reason="NO_CREDENTIALS",
        ) from None


def _path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


def _refuse_expired(token: str, source: str) -> None:
    """Says so when the credential's exp has passed (its signature is the server's to check)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return  # Not readable here: the server answers it is invalid.
    expires = claims.get("exp")
    if isinstance(expires, int | float) and expires < time.time():
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(expires))
        raise CliError(
            f"the admin credential from {source} expired at {stamp}: get a new one "
            "(`askvault login`)",
            ExitCode.UNAUTHENTICATED,
            reason="CREDENTIAL_EXPIRED",
        )
