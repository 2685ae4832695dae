"""Bare baselines: the least a path can cost on this machine, built the way the services are
(grpc.aio, asyncpg, aiohttp, aiosmtplib), so a figure divided by one says what our code adds.

As processes (``python -m bench._bare grpc|http ...``), for figures measured against services
that run as their own processes:

- ``grpc --port P [--database-url URL]``: one unary method; with a database it runs one
  query per call (``SELECT`` of one row by key from ``bench_rows``), else it echoes.
- ``http --port P --target HOST:PORT``: POST / forwarded as one call to a ``grpc`` process.

In the bench's own process: ``SmtpPool``, SMTP sends over a few kept-open connections."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import asyncpg
import grpc
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack import config

METHOD = "/bench.Bare/Call"
_ROWS = 1000
_QUERY = "SELECT payload FROM bench_rows WHERE key = $1"


async def _grpc_server(port: int, database_url: str) -> None:
    pool: asyncpg.Pool | None = None
    if database_url:
        pool = await asyncpg.create_pool(database_url, min_size=10, max_size=10)
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (key integer PRIMARY KEY, payload text)"
        )
        await pool.execute(
            "INSERT INTO bench_rows SELECT g, md5(g::text) FROM generate_series(0, $1) g"
            " ON CONFLICT DO NOTHING",
            _ROWS - 1,
        )

    async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if pool is None:
            return request
        found = await pool.fetchval(_QUERY, int.from_bytes(request[:4], "big") % _ROWS)
        return str(found).encode()

    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Bare", {"Call": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await _until_terminated()
    await server.stop(1)


async def _http_server(port: int, target: str) -> None:
    """Starlette on uvicorn, as the edge serves."""
    channel = grpc.aio.insecure_channel(target)
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

    async def handle(request: Request) -> JSONResponse:
        answer = await call(await request.body(), timeout=10)
        return JSONResponse({"answer": bytes(answer).decode(errors="replace")})

    app = Starlette(routes=[Route("/", handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    await server.serve()  # uvicorn stops on SIGTERM
    await channel.close()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


@asynccontextmanager
async def process(*arguments: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """A bare server process (``arguments`` after ``python -m bench._bare``), ready on
    ``port``; terminated on exit."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._bare", *arguments, "--port", str(port), cwd=config.ROOT
    )
    try:
        for _ in range(150):
            if child.returncode is not None:
                raise RuntimeError(f"bare {arguments[0]} exited with {child.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"bare {arguments[0]} did not listen on {port}")
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()


class SmtpPool:
    """SMTP sends over at most ``size`` connections kept open between messages, as the
    notifier's workers keep theirs (SMTP_IDLE_CONNECTIONS, 8 by default)."""

    def __init__(self, host: str, port: int, size: int = 8) -> None:
        self._host, self._port = host, port
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def send(self, message: EmailMessage) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            if client is None or not client.is_connected:
                client = aiosmtplib.SMTP(
                    hostname=self._host, port=self._port, start_tls=False, timeout=10
                )
                await client.connect()
            try:
                await client.send_message(message)
            except Exception:
                client.close()
                raise
            self._idle.append(client)

    async def close(self) -> None:
        for client in self._idle:
            with contextlib.suppress(Exception):
                await client.quit()
        self._idle.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["grpc", "http"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--target", default="")
    arguments = parser.parse_args()
    # On uvloop, as the services run (runtime.server.run_process).
    if arguments.kind == "grpc":
        uvloop.run(_grpc_server(arguments.port, arguments.database_url))
    else:
        uvloop.run(_http_server(arguments.port, arguments.target))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
