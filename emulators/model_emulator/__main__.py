"""``python -m model_emulator``: the scripted chat-completions server on MODEL_EMULATOR_HOST
(127.0.0.1) and MODEL_EMULATOR_PORT (8090), API key MODEL_EMULATOR_API_KEY. Stops on SIGTERM
or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from model_emulator import app


async def _serve(host: str, port: int, state: app.State) -> None:
    running = await app.start(host, port, state)
    print(f"model_emulator: chat completions on {running.base_url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await running.close()


def main() -> None:
    """Parses flags (defaults from the environment) and serves."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m model_emulator")
    parser.add_argument("--host", default=env("MODEL_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("MODEL_EMULATOR_PORT", "8090")))
    parser.add_argument("--api-key", default=env("MODEL_EMULATOR_API_KEY", app.API_KEY))
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, app.State(api_key=args.api_key)))


if __name__ == "__main__":
    main()
