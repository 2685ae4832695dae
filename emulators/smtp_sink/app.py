"""The sink's servers: SMTP (aiosmtpd, on the running event loop) and the HTTP API (aiohttp).

HTTP API (JSON):
- ``GET /health``: ``{"ok": true}``.
- ``GET /messages?to=&message_id=``: the received messages, oldest first.
- ``DELETE /messages``: forget them all (the refused ones too).
- ``GET /refused``: the messages answered with a fault at DATA (message_id, code, rcpt_tos).
- ``GET /messages/wait?count=N&timeout=S&to=``: answers once N messages (to ``to``) are in,
  408 after S seconds (default 10).
- ``GET /stats``: received, distinct_message_ids, duplicates.
- ``POST /faults`` ``{"code": 451, "message": "4.3.0 try later", "stage": "data"|"rcpt",
  "count": 1}``: the next ``count`` commands of that stage get this reply instead of 250.
  ``GET /faults`` lists, ``DELETE /faults`` clears them.
- ``POST /config`` ``{"delay_seconds": 0.01}``: answer DATA that much later.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiohttp import web
from aiosmtpd.smtp import SMTP

from smtp_sink.store import Fault, MailStore, SinkHandler

STORE_KEY = web.AppKey("store", MailStore)


def create_app(store: MailStore) -> web.Application:
    """The HTTP API over a store."""
    app = web.Application()
    app[STORE_KEY] = store
    app.router.add_get("/health", _health)
    app.router.add_get("/messages", _list)
    app.router.add_delete("/messages", _clear)
    app.router.add_get("/messages/wait", _wait)
    app.router.add_get("/refused", _refused)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/faults", _list_faults)
    app.router.add_post("/faults", _add_fault)
    app.router.add_delete("/faults", _clear_faults)
    app.router.add_post("/config", _config)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _list(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    found = store.select(
        to=request.query.get("to", ""), message_id=request.query.get("message_id", "")
    )
    return web.json_response({"messages": [m.to_json() for m in found]})


async def _refused(request: web.Request) -> web.Response:
    refused = request.app[STORE_KEY].refused
    return web.json_response({"refused": [mail.to_json() for mail in refused]})


async def _clear(request: web.Request) -> web.Response:
    request.app[STORE_KEY].clear()
    return web.json_response({"ok": True})


async def _wait(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    try:
        count = int(request.query.get("count", "1"))
        timeout = float(request.query.get("timeout", "10"))
    except ValueError:
        return web.json_response({"error": "count and timeout are numbers"}, status=400)
    try:
        found = await store.wait_for(count, timeout, to=request.query.get("to", ""))
    except TimeoutError:
        return web.json_response({"error": "timed out", **store.stats()}, status=408)
    return web.json_response({"messages": [m.to_json() for m in found]})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE_KEY].stats())


async def _list_faults(request: web.Request) -> web.Response:
    faults = request.app[STORE_KEY].faults
    return web.json_response({"faults": [f.__dict__ for f in faults]})


async def _add_fault(request: web.Request) -> web.Response:
    body = await request.json()
    code = int(body.get("code", 451))
    stage = str(body.get("stage", "data"))
    if not 400 <= code <= 599 or stage not in ("data", "rcpt"):
        return web.json_response({"error": "code 400-599, stage data or rcpt"}, status=400)
    default = "4.3.0 Try again later" if code < 500 else "5.1.1 Mailbox unavailable"
    fault = Fault(code, str(body.get("message", default)), stage, int(body.get("count", 1)))
    request.app[STORE_KEY].queue_fault(fault)
    return web.json_response({"fault": fault.__dict__})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[STORE_KEY].faults.clear()
    return web.json_response({"ok": True})


async def _config(request: web.Request) -> web.Response:
    body = await request.json()
    store = request.app[STORE_KEY]
    if "delay_seconds" in body:
        store.delay_seconds = max(0.0, float(body["delay_seconds"]))
    return web.json_response({"delay_seconds": store.delay_seconds})


@dataclass
class RunningSink:
    """A started sink: its ports, its store, and how to stop it."""

    store: MailStore
    host: str
    smtp_port: int
    http_port: int
    _smtp_server: asyncio.base_events.Server
    _runner: web.AppRunner

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.http_port}"

    async def close(self) -> None:
        """Stops both servers."""
        self._smtp_server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._smtp_server.wait_closed(), 2.0)
        await self._runner.cleanup()


async def start(
    host: str = "127.0.0.1", smtp_port: int = 0, http_port: int = 0, store: MailStore | None = None
) -> RunningSink:
    """Starts the SMTP server and the HTTP API on the running loop (port 0: a free port)."""
    store = store if store is not None else MailStore()
    handler = SinkHandler(store)
    loop = asyncio.get_running_loop()
    smtp_server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.local", data_size_limit=50 * 1024 * 1024),
        host=host,
        port=smtp_port,
    )
    runner = web.AppRunner(create_app(store), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, http_port)
    await site.start()
    bound_smtp = smtp_server.sockets[0].getsockname()[1]
    bound_http = int(runner.addresses[0][1])
    return RunningSink(store, host, bound_smtp, bound_http, smtp_server, runner)
