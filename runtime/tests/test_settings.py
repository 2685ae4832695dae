"""Settings read from the environment: a bad value fails at start, naming its variable and
never repeating a secret."""

from __future__ import annotations

import base64
import os

import pytest

from runtime import settings
from runtime.settings import EncryptionKeys, ServiceSettings

_SECRET_LOOKING = "k1:" + base64.b64encode(b"sixteen byte key").decode()


class _WithKeys(ServiceSettings):
    secrets_encryption_keys: EncryptionKeys


@pytest.fixture(autouse=True)
def _database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", f"k1:{base64.b64encode(os.urandom(32)).decode()}")


def _failure(settings_class: type[ServiceSettings]) -> str:
    with pytest.raises(SystemExit) as failed:
        settings.load(settings_class)
    return str(failed.value)


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", " error "])
def test_log_level_takes_the_standard_levels_in_any_case(
    monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("LOG_LEVEL", level)
    assert settings.load(ServiceSettings).log_level == level.strip().upper()


@pytest.mark.parametrize("level", ["verbose", "INFO,DEBUG", ""])
def test_a_bad_log_level_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("LOG_LEVEL", level)
    message = _failure(ServiceSettings)
    assert "LOG_LEVEL" in message
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in message


@pytest.mark.parametrize(
    "keys",
    [
        _SECRET_LOOKING,  # 16 bytes, not 32
        "k1-no-colon",
        "k1:not base64!!",
        ",",
        # No key id. A fixed key, not a random one: xdist workers must collect the same ids.
        f":{base64.b64encode(bytes(32)).decode()}",
    ],
)
def test_bad_encryption_keys_fail_at_start_naming_the_variable_not_the_keys(
    monkeypatch: pytest.MonkeyPatch, keys: str
) -> None:
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", keys)
    message = _failure(_WithKeys)
    assert "SECRETS_ENCRYPTION_KEYS" in message
    assert "<id>:<base64 of 32 bytes>" in message
    material = keys.partition(":")[2]
    assert not material or material not in message


def test_good_encryption_keys_with_an_old_one_behind_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = ",".join(f"k{n}:{base64.b64encode(os.urandom(32)).decode()}" for n in (2, 1))
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", spec)
    assert settings.load(_WithKeys).secrets_encryption_keys.get_secret_value() == spec


def test_missing_required_encryption_keys_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_ENCRYPTION_KEYS")
    assert "SECRETS_ENCRYPTION_KEYS: Field required" in _failure(_WithKeys)
