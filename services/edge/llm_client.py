"""A client of the OpenAI-compatible chat-completions API (``POST {base_url}/chat/completions``
with tools), as OpenAI, Anthropic's compatible endpoint, vLLM, Ollama and llama.cpp serve it.

Plain aiohttp (already the edge's HTTP client) rather than an SDK: the edge needs one request
shape, a hard deadline it owns and no retries of its own (a failed or slow model falls back to
the rules at once), and nothing an SDK's fast-moving major versions would add.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp


class ModelFailed(Exception):
    """The model did not answer usably: unreachable, an HTTP error, too slow, or an answer
    that is not a chat completion."""


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asked for; ``arguments`` is None when they were not a JSON
    object."""

    call_id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str


@dataclass(frozen=True)
class ModelTurn:
    """What the model answered: words, tool calls, or both."""

    content: str
    tool_calls: tuple[ToolCall, ...]

    def as_message(self) -> dict[str, Any]:
        """The assistant message to send back with the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.raw_arguments},
                }
                for call in self.tool_calls
            ]
        return message


@dataclass(frozen=True)
class ChatModel:
    """Where the model is and how to reach it."""

    base_url: str
    model: str
    api_key: str

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        timeout_seconds: float,
    ) -> ModelTurn:
        """One chat completion; ModelFailed for anything but a usable answer in time."""
        body = {
            "model": self.model,
            "messages": messages,
            "tools": tools,
            "tool_choice": "auto",
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=timeout_seconds)
                ) as session,
                session.post(url, json=body, headers=headers) as response,
            ):
                if response.status != 200:
                    raise ModelFailed(f"HTTP {response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as failure:
            raise ModelFailed(type(failure).__name__) from failure
        return parse_completion(answer)


def parse_completion(answer: Any) -> ModelTurn:
    """The first choice's message; ModelFailed when the body is not a chat completion."""
    try:
        message = answer["choices"][0]["message"]
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise ModelFailed("content is not text")
        calls = []
        for call in message.get("tool_calls") or []:
            function = call["function"]
            raw = function.get("arguments") or "{}"
            raw = raw if isinstance(raw, str) else json.dumps(raw)
            try:
                arguments = json.loads(raw)
            except ValueError:
                arguments = None
            calls.append(
                ToolCall(
                    call_id=str(call.get("id", "")),
                    name=str(function["name"]),
                    arguments=arguments if isinstance(arguments, dict) else None,
                    raw_arguments=raw,
                )
            )
    except (KeyError, IndexError, TypeError, AttributeError) as failure:
        raise ModelFailed("not a chat completion") from failure
    return ModelTurn(content=content.strip(), tool_calls=tuple(calls))
