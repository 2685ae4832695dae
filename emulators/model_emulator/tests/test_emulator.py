"""The model emulator plays its script over real HTTP, in the chat-completions format the
edge's client reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from edge.llm_client import ChatModel, ModelFailed
from model_emulator import app


@pytest.fixture
async def model() -> AsyncIterator[app.RunningEmulator]:
    running = await app.start()
    yield running
    await running.close()


async def _script(running: app.RunningEmulator, steps: list[dict[str, object]]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{running.url}/_emulator/script", json={"steps": steps}) as response,
    ):
        assert response.status == 200


async def test_plays_tool_calls_then_words(model: app.RunningEmulator) -> None:
    await _script(
        model,
        [
            {"tool_calls": [{"name": "get_subscription", "arguments": {}}]},
            {"content": "You're on Growth."},
        ],
    )
    client = ChatModel(model.base_url, "scripted-model", app.API_KEY)
    first = await client.complete([{"role": "user", "content": "hi"}], [], 5)
    assert [call.name for call in first.tool_calls] == ["get_subscription"]
    assert first.tool_calls[0].arguments == {}
    second = await client.complete([{"role": "user", "content": "hi"}], [], 5)
    assert second.content == "You're on Growth." and second.tool_calls == ()
    assert len(model.state.requests) == 2


async def test_failures_are_model_failures(model: app.RunningEmulator) -> None:
    client = ChatModel(model.base_url, "scripted-model", app.API_KEY)
    await _script(model, [{"http_status": 500}, {"raw": {"nothing": 1}}, {"delay_seconds": 2}])
    for timeout in (5.0, 5.0, 0.3):
        with pytest.raises(ModelFailed):
            await client.complete([{"role": "user", "content": "hi"}], [], timeout)
    wrong_key = ChatModel(model.base_url, "scripted-model", "wrong")
    await _script(model, [{"content": "never"}])
    with pytest.raises(ModelFailed, match="401"):
        await wrong_key.complete([{"role": "user", "content": "hi"}], [], 5)
