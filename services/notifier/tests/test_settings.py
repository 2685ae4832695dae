"""The notifier's own settings fail at start with the variable named, never the secret."""

from __future__ import annotations

import base64
import os

import pytest

from notifier.settings import NotifierSettings
from runtime import settings


@pytest.fixture(autouse=True)
def _database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")


def _failure() -> str:
    with pytest.raises(SystemExit) as failed:
        settings.load(NotifierSettings)
    return str(failed.value)


def test_the_graph_api_version_is_current_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.load(NotifierSettings).whatsapp_api_version == "v26.0"
    monkeypatch.setenv("WHATSAPP_API_VERSION", "26.0")
    assert "WHATSAPP_API_VERSION" in _failure()


@pytest.mark.parametrize(
    "secret",
    [
        "c2hvcnQgYnV0IG5vIHByZWZpeCBhdCBhbGwgaGVyZQ==",
        "whsec_not base64",
        # Under the spec's 24 bytes. Fixed, not random: pytest-xdist workers must collect
        # the same test ids.
        f"whsec_{base64.b64encode(bytes(range(16))).decode()}",
    ],
)
def test_a_bad_helpdesk_secret_fails_at_start_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("HELPDESK_WEBHOOK_SECRET", secret)
    message = _failure()
    assert "HELPDESK_WEBHOOK_SECRET" in message
    assert secret.removeprefix("whsec_") not in message


def test_a_good_helpdesk_secret_and_keys_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"whsec_{base64.b64encode(os.urandom(32)).decode()}"
    monkeypatch.setenv("HELPDESK_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", f"k1:{base64.b64encode(os.urandom(32)).decode()}")
    loaded = settings.load(NotifierSettings)
    assert loaded.helpdesk_webhook_secret.get_secret_value() == secret
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", "k1:short")
    assert "SECRETS_ENCRYPTION_KEYS" in _failure()
