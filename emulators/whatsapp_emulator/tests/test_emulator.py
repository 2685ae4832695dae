"""The Cloud API emulator: auth, recording, documented errors, signed webhooks, and the
retries of webhooks the receiver did not take."""

from __future__ import annotations

import asyncio
import itertools
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


async def _receiver(answers: list[int]) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A webhook receiver answering ``answers`` in turn (then 200); what it was posted."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        assert signing.verify(raw, "secret", request.headers[signing.HEADER])
        received.append(json.loads(raw))
        return web.Response(status=answers.pop(0) if answers else 200)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = web.AppRunner(hook_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook", received


async def _eventually(check: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.01)


@pytest.mark.integration
async def test_webhooks_not_taken_are_posted_again_with_backoff() -> None:
    # The receiver refuses twice (a 503, then a 400), then takes it: three attempts of one
    # delivery, the same signed body each time, the waits growing.
    runner, url, received = await _receiver([503, 400])
    state = app.State(
        app_secret="secret",
        webhook_url=url,
        webhook_retry_base_seconds=0.05,
        webhook_retry_cap_seconds=1.0,
    )
    emulator = await app.start(state=state)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{emulator.url}/_emulator/inbound",
                json={"phone_number_id": "123", "from": "+14155550100", "text": "yes"},
            ) as response:
                first = await response.json()
            assert first["webhook_status"] == 503
            await _eventually(lambda: len(received) == 3 and not state.pending)
            assert received == [first["payload"]] * 3
            async with http.get(f"{emulator.url}/_emulator/webhooks") as response:
                log = await response.json()
        attempts = log["webhooks"]
        assert [(a["attempt"], a["status"], a["taken"]) for a in attempts] == [
            (1, 503, False),
            (2, 400, False),
            (3, 200, True),
        ]
        assert len({a["delivery_id"] for a in attempts}) == 1
        gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps
        assert log["pending"] == []
    finally:
        await emulator.close()
        await runner.cleanup()


@pytest.mark.integration
async def test_a_status_webhook_nobody_answered_is_kept_until_flushed_or_given_up() -> None:
    # Nobody listens at first: the status webhook is pending (retries far apart); once the
    # receiver is up, a flush delivers it at once.
    runner, url, received = await _receiver([])
    port = runner.addresses[0][1]
    await runner.cleanup()
    state = app.State(
        access_token="tok",
        app_secret="secret",
        webhook_url=url,
        auto_statuses=["delivered"],
        status_delay_seconds=0.0,
        webhook_retry_base_seconds=60.0,
        webhook_retry_cap_seconds=60.0,
    )
    emulator = await app.start(state=state)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{emulator.url}/v26.0/123/messages",
                json=BODY,
                headers={"Authorization": "Bearer tok"},
            ) as response:
                wamid = (await response.json())["messages"][0]["id"]
            await _eventually(lambda: bool(state.pending))
            async with http.get(f"{emulator.url}/_emulator/webhooks") as response:
                log = await response.json()
            assert [(a["attempt"], a["status"]) for a in log["webhooks"]] == [(1, 0)]
            (pending,) = log["pending"]
            assert pending["attempts"] == 1
            assert pending["body"]["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] == wamid

            hook_app = web.Application()
            hook_app.router.add_post("/hook", _taking(received))
            again = web.AppRunner(hook_app, access_log=None)
            await again.setup()
            await web.TCPSite(again, "127.0.0.1", port).start()
            try:
                async with http.post(
                    f"{emulator.url}/_emulator/webhooks/flush", json={"timeout": 5}
                ) as response:
                    assert (await response.json())["pending"] == []
            finally:
                await again.cleanup()
        assert [r["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] for r in received] == [
            wamid
        ]
        assert [(a["attempt"], a["taken"]) for a in state.webhooks] == [(1, False), (2, True)]

        # A receiver that never takes it: given up after webhook_max_attempts.
        state.webhook_max_attempts = 3
        state.webhook_retry_base_seconds = 0.01
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{emulator.url}/_emulator/inbound",
                json={"phone_number_id": "123", "from": "+14155550100", "text": "hi"},
            ) as response,
        ):
            assert (await response.json())["webhook_status"] == 0
        await _eventually(lambda: len(state.webhooks) == 5 and not state.pending)
        assert [a["attempt"] for a in state.webhooks[2:]] == [1, 2, 3]
    finally:
        await emulator.close()


def _taking(received: list[dict[str, Any]]) -> Any:
    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response()

    return hook
