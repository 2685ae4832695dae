"""``make run LLM=1``: the launcher starts the scripted model emulator and points the edge's
LLM mode at it; without it, no model and no LLM settings."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from devstack import config, planning, processes


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stack's keys made under a temporary .data (never the developer's)."""
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    return tmp_path


def test_without_llm_the_edge_has_no_model(data_dir: Path) -> None:
    children = {c.name: c for c in planning.plan(config.load(), "postgresql://unused")}
    assert "model_emulator" not in children
    assert not any(name.startswith("LLM_") for name in children["edge"].env)


@pytest.mark.integration
async def test_llm_starts_the_model_emulator_the_edge_is_pointed_at(
    data_dir: Path, unused_tcp_port: int
) -> None:
    children = {
        c.name: c
        for c in planning.plan(
            config.load(),
            "postgresql://unused",
            ports={**config.load().raw["ports"], "model_emulator": unused_tcp_port},
            llm=True,
        )
    }
    model, edge = children["model_emulator"], children["edge"]
    assert list(children).index("model_emulator") < list(children).index("edge")
    base_url = edge.env["LLM_BASE_URL"]
    assert base_url == f"http://127.0.0.1:{unused_tcp_port}/v1"
    # The emulator as the launcher starts it answers the edge's settings.
    await processes.start(model, data_dir / "logs")
    try:
        await processes.wait_ready(model, 30.0)
        script = {"steps": [{"content": "hello from the script"}]}
        headers = {"Authorization": f"Bearer {edge.env['LLM_API_KEY']}"}
        body = {"model": edge.env["LLM_MODEL"], "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as http:
            root = base_url.removesuffix("/v1")
            async with http.post(f"{root}/_emulator/script", json=script) as answer:
                assert answer.status == 200
            async with http.post(
                f"{base_url}/chat/completions", json=body, headers=headers
            ) as answer:
                assert answer.status == 200, await answer.text()
                completion = await answer.json()
        assert completion["choices"][0]["message"]["content"] == "hello from the script"
    finally:
        await processes.stop([model], grace=5.0)


def test_the_console_signs_in_with_the_local_provider_the_stack_starts(data_dir: Path) -> None:
    demo = config.load()
    children = {c.name: c for c in planning.plan(demo, "postgresql://unused")}
    provider, console = children["admin_idp"], children["console"]
    assert list(children).index("admin_idp") < list(children).index("console")
    assert provider.argv[1:] == [
        "-m",
        "devstack.oidc_provider",
        "--port",
        str(demo.port("admin_idp")),
    ]
    # The provider's key stays with the launcher's files; no process gets it in its env.
    assert not [value for value in provider.env.values() if "PRIVATE KEY" in value]
    assert console.env["OIDC_DISCOVERY_URL"] == (
        f"http://127.0.0.1:{demo.port('admin_idp')}/.well-known/openid-configuration"
    )
    assert console.env["WORKSPACE_ID"] == demo.workspace_id
    assert console.address == f"http://127.0.0.1:{demo.port('console')}"
    assert console.env["ADMIN_JWKS_FILE"] == children["policy"].env["ADMIN_JWKS_FILE"]
