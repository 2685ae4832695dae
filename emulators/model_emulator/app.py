"""The model emulator's HTTP server (aiohttp).

Chat completions (what the edge calls):
- ``POST /v1/chat/completions`` with ``Authorization: Bearer <api key>``: answers with the
  next step of the script, in the OpenAI chat-completions format (one choice, an assistant
  message with ``content`` or ``tool_calls``). With no step left it answers 503.

Admin (JSON):
- ``GET /_emulator/health``.
- ``POST /_emulator/script`` ``{"steps": [...]}``: replaces the script. A step is one of
  ``{"content": "text"}`` (the model's final words), ``{"tool_calls": [{"name": ...,
  "arguments": {...} | "raw json"}]}`` (the model calls tools), ``{"http_status": 500}`` (the
  server fails), ``{"delay_seconds": 30, ...}`` (held that long before the rest of the step is
  played), ``{"raw": {...}}`` (this JSON body as is: a malformed answer).
- ``GET /_emulator/requests``: every chat-completions request body received, in order.
- ``DELETE /_emulator/requests``: forgets them (and the script).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "local-model-key"


@dataclass
class State:
    """The script left to play and what the emulator was asked."""

    api_key: str = API_KEY
    model: str = "scripted-model"
    steps: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


STATE_KEY = web.AppKey("state", State)


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments", {})
    return {
        "id": f"call_{secrets.token_hex(6)}",
        "type": "function",
        "function": {
            "name": str(call["name"]),
            # A string as the API sends it; a test may send a string that is not JSON.
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def _completion(state: State, step: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": step.get("content")}
    finish = "stop"
    if step.get("tool_calls"):
        message["tool_calls"] = [_tool_call(call) for call in step["tool_calls"]]
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{secrets.token_hex(8)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": state.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "server_error", "code": None}}, status=status
    )


async def chat_completions(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.headers.get("Authorization", "") != f"Bearer {state.api_key}":
        return _error(401, "invalid api key")
    body = await request.json()
    state.requests.append(body)
    if not state.steps:
        return _error(503, "the script has no step left")
    step = state.steps.pop(0)
    if step.get("delay_seconds"):
        await asyncio.sleep(float(step["delay_seconds"]))
    if step.get("http_status"):
        return _error(int(step["http_status"]), "scripted failure")
    if "raw" in step:
        return web.json_response(step["raw"])
    return web.json_response(_completion(state, step))


async def set_script(request: web.Request) -> web.Response:
    body = await request.json()
    steps = body.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return _error(400, "steps must be a list of objects")
    request.app[STATE_KEY].steps = list(steps)
    return web.json_response({"steps": len(steps)})


async def list_requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": request.app[STATE_KEY].requests})


async def clear_requests(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.requests.clear()
    state.steps.clear()
    return web.json_response({"cleared": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(state: State | None = None) -> web.Application:
    """The aiohttp application."""
    app = web.Application()
    app[STATE_KEY] = state or State()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/_emulator/script", set_script)
    app.router.add_get("/_emulator/requests", list_requests)
    app.router.add_delete("/_emulator/requests", clear_requests)
    app.router.add_get("/_emulator/health", health)
    return app


@dataclass
class RunningEmulator:
    """A started emulator; ``url`` is the base URL a client's ``LLM_BASE_URL`` names
    (``.../v1``)."""

    state: State
    url: str
    _runner: web.AppRunner

    @property
    def base_url(self) -> str:
        """What ``LLM_BASE_URL`` is set to."""
        return f"{self.url}/v1"

    async def close(self) -> None:
        """Stops the server."""
        await self._runner.cleanup()


async def start(
    host: str = "127.0.0.1", port: int = 0, state: State | None = None
) -> RunningEmulator:
    """Starts the emulator on the running loop (port 0: a free port)."""
    app = create_app(state)
    # Shutdown must not wait for a held (delayed) request.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1])
    return RunningEmulator(app[STATE_KEY], f"http://{host}:{bound}", runner)
