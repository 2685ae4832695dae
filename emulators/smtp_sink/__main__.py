"""``python -m smtp_sink``: SMTP on SMTP_SINK_SMTP_PORT (1025), HTTP on SMTP_SINK_HTTP_PORT
(8025), both on SMTP_SINK_HOST (127.0.0.1); stops on SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from smtp_sink import app


async def _serve(host: str, smtp_port: int, http_port: int) -> None:
    running = await app.start(host, smtp_port, http_port)
    print(
        f"smtp_sink: SMTP on {host}:{running.smtp_port}, HTTP API on {running.http_url}",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await running.close()


def main() -> None:
    """Parses flags (defaults from the environment) and serves."""
    parser = argparse.ArgumentParser(prog="python -m smtp_sink")
    parser.add_argument("--host", default=os.environ.get("SMTP_SINK_HOST", "127.0.0.1"))
    parser.add_argument(
        "--smtp-port", type=int, default=int(os.environ.get("SMTP_SINK_SMTP_PORT", "1025"))
    )
    parser.add_argument(
        "--http-port", type=int, default=int(os.environ.get("SMTP_SINK_HTTP_PORT", "8025"))
    )
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.smtp_port, args.http_port))


if __name__ == "__main__":
    main()
