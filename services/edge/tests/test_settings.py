"""The edge's own settings fail at start with the variable named."""

from __future__ import annotations

import pytest

from edge.settings import EdgeSettings
from runtime import settings


@pytest.fixture(autouse=True)
def _database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize(
    "spec", ["", "ws_demo", "1000000001:ws_a", "1000000001:ws_a, 1000000002:ws_b"]
)
def test_whatsapp_workspaces_takes_one_workspace_or_number_pairs(
    monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.setenv("WHATSAPP_WORKSPACES", spec)
    assert settings.load(EdgeSettings).whatsapp_workspaces == spec


@pytest.mark.parametrize(
    "spec",
    [
        "ws_a,ws_b",  # two bare workspaces: which one gets a message?
        "ws_a,1000000001:ws_b",
        "+1 415 555:ws_a",  # a phone number, not its id
        "1000000001:",
        "1000000001=ws_a",
        "ws a",
    ],
)
def test_a_bad_whatsapp_workspaces_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.setenv("WHATSAPP_WORKSPACES", spec)
    with pytest.raises(SystemExit) as failed:
        settings.load(EdgeSettings)
    assert "WHATSAPP_WORKSPACES" in str(failed.value)


def test_bad_encryption_keys_fail_the_edge_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_ENCRYPTION_KEYS", "k1:c2hvcnQ=")
    with pytest.raises(SystemExit) as failed:
        settings.load(EdgeSettings)
    assert "SECRETS_ENCRYPTION_KEYS" in str(failed.value)
    assert "c2hvcnQ" not in str(failed.value)
