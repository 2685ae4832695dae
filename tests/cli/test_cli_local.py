"""The CLI's own parts, without a server: its defaults match the local stack, its
credential handling, its options, and what it imports."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from askvault_cli import helpdoc, settings
from askvault_cli.commands import bounds, login
from askvault_cli.failures import CliError, ExitCode
from askvault_cli.main import app
from devstack import config
from runtime.local_identity_provider import LocalIdentityProvider


def test_the_default_addresses_are_the_local_stacks_ports() -> None:
    demo = config.load()
    for service, port in settings.DEFAULT_PORTS.items():
        assert port == demo.port(service)


def test_login_local_uses_the_local_stacks_provider() -> None:
    assert login.LOCAL_ISSUER == config.ADMIN_ISSUER
    assert login.local_idp_dir() == config.ADMIN_PROVIDER_DIR


def test_refund_caps_are_read_in_major_units() -> None:
    cap = bounds.parse_cap("usd=49.50")
    assert cap is not None and (cap.amount_minor, cap.currency) == (4950, "usd")
    yen = bounds.parse_cap("JPY=5000")
    assert yen is not None and yen.amount_minor == 5000
    assert bounds.parse_cap("eur=none") is None
    for bad in ("usd", "usd=", "usd=1.234", "jpy=50.5", "dollars=5", "usd=-1", "usd=abc"):
        with pytest.raises(CliError) as raised:
            bounds.parse_cap(bad)
        assert raised.value.exit_code == ExitCode.USAGE


def test_an_expired_credential_is_refused_before_any_call(tmp_path: Path) -> None:
    provider = LocalIdentityProvider.generate("https://idp.invalid/", "k1")
    token = provider.issue("admin-old", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    result = CliRunner().invoke(
        app,
        ["bounds", "history"],
        env={
            "ASKVAULT_ADMIN_TOKEN": token,
            "ASKVAULT_WORKSPACE": "ws_x",
            # Nothing listens there: a call would fail differently.
            "ASKVAULT_POLICY_ADDR": "127.0.0.1:9",
            "ASKVAULT_CONFIG_DIR": str(tmp_path),
        },
    )
    assert result.exit_code == ExitCode.UNAUTHENTICATED
    assert "expired" in result.stderr and "ASKVAULT_ADMIN_TOKEN" in result.stderr


def test_a_token_file_is_read_and_an_empty_one_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = CliRunner().invoke(
        app,
        ["--token-file", str(empty), "bounds", "history"],
        env={"ASKVAULT_WORKSPACE": "ws_x", "ASKVAULT_ADMIN_TOKEN": None},
    )
    assert result.exit_code == ExitCode.NO_CREDENTIALS
    assert str(empty) in result.stderr


def test_the_stored_credential_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.CONFIG_DIR_ENV, str(tmp_path / "askvault"))
    path = settings.store_token("a.b.c")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.Options().credential() == "a.b.c"
    path = settings.store_token("d.e.f")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "d.e.f\n"


def test_a_malformed_option_fails_before_any_call_as_one_json_line() -> None:
    result = CliRunner().invoke(
        app,
        ["--json", "bounds", "propose", "--refund-cap", "usd=1.234"],
        # Nothing listens there: a call would fail with UNAVAILABLE instead.
        env={
            "ASKVAULT_WORKSPACE": "ws_x",
            "ASKVAULT_ADMIN_TOKEN": "x.y.z",
            "ASKVAULT_POLICY_ADDR": "127.0.0.1:9",
        },
    )
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["error"]["reason"] == "INVALID_OPTION"


@pytest.mark.integration
def test_the_cli_imports_no_service_code() -> None:
    loaded = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, askvault_cli.main; print(','.join(sorted(sys.modules)))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(",")
    )
    services = {"identity", "policy", "billing_gateway", "notifier", "edge", "devstack"}
    assert not {name.split(".")[0] for name in loaded} & services


def test_docs_hold_the_current_help() -> None:
    """docs/cli.md shows every command's help as it is (python -m askvault_cli.helpdoc)."""
    assert helpdoc.current(helpdoc.DOC.read_text()) == helpdoc.render().strip("\n")
    assert "askvault escalations approve --help" in helpdoc.DOC.read_text()


def test_options_beat_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.CONFIG_DIR_ENV, str(tmp_path / "askvault"))
    settings.store_token("from.stored")
    assert settings.Options().credential() == "from.stored"
    given = tmp_path / "token"
    given.write_text("from.file\n")
    monkeypatch.setenv(settings.TOKEN_FILE_ENV, str(given))
    assert settings.Options().credential() == "from.file"
    monkeypatch.setenv(settings.TOKEN_ENV, "from.env")
    assert settings.Options().credential() == "from.env"
    assert settings.Options(token_file=given).credential() == "from.file"
    assert settings.Options(token="from.flag", token_file=given).credential() == "from.flag"
    monkeypatch.setenv(settings.WORKSPACE_ENV, "ws_env")
    assert settings.Options().workspace_id() == "ws_env"
    assert settings.Options(workspace="ws_flag").workspace_id() == "ws_flag"


def test_an_unreadable_ca_bundle_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--ca-file", str(tmp_path / "missing.pem"), "bounds", "history"],
        env={"ASKVAULT_WORKSPACE": "ws_x", "ASKVAULT_ADMIN_TOKEN": "x.y.z"},
    )
    assert result.exit_code == ExitCode.USAGE
    assert "missing.pem" in result.stderr and "Traceback" not in result.stderr
