"""The Cloud API emulator: auth, recording, documented errors, signed webhooks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from whatsapp_emulator import app, signing

BODY = {
    "messaging_product": "whatsapp",
    "to": "+14155550100",
    "type": "template",
    "template": {"name": "payment_failed_v1", "language": {"code": "en"}, "components": []},
}


@pytest.mark.integration
async def test_sends_errors_and_signed_status_webhooks() -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        assert signing.verify(raw, "secret", request.headers[signing.HEADER])
        received.append(json.loads(raw))
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = web.AppRunner(hook_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state = app.State(
        access_token="tok",
        app_secret="secret",
        webhook_url=f"http://127.0.0.1:{runner.addresses[0][1]}/hook",
        status_delay_seconds=0.01,
    )
    emulator = await app.start(state=state)
    url = f"{emulator.url}/v26.0/123/messages"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=BODY) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == 190
            auth = {"Authorization": "Bearer tok"}
            unversioned = f"{emulator.url}/26.0/123/messages"
            async with http.post(unversioned, json=BODY, headers=auth) as response:
                assert response.status == 400
            async with http.post(f"{emulator.url}/_emulator/faults", json={"code": 131056}):
                pass
            async with http.post(url, json=BODY, headers=auth) as response:
                assert response.status == 400
                assert (await response.json())["error"]["code"] == 131056
            async with http.post(url, json=BODY, headers=auth) as response:
                assert response.status == 200
                wamid = (await response.json())["messages"][0]["id"]
            for _ in range(1000):  # up to 10 s
                if len(received) == 2:
                    break
                await asyncio.sleep(0.01)
            statuses = [r["entry"][0]["changes"][0]["value"]["statuses"][0] for r in received]
            # Two posts from two tasks: they may arrive in either order (as Meta's may).
            assert sorted((s["id"], s["status"]) for s in statuses) == [
                (wamid, "delivered"),
                (wamid, "sent"),
            ]
            assert [m["wamid"] for m in state.messages] == [wamid]
    finally:
        await emulator.close()
        await runner.cleanup()
