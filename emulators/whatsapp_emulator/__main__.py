"""``python -m whatsapp_emulator``: the Cloud API emulator on WHATSAPP_EMULATOR_HOST
(127.0.0.1) and WHATSAPP_EMULATOR_PORT (8089). The bearer token is
WHATSAPP_EMULATOR_ACCESS_TOKEN, webhooks go to WHATSAPP_EMULATOR_WEBHOOK_URL signed with
WHATSAPP_EMULATOR_APP_SECRET; a webhook not taken is posted again after
WHATSAPP_EMULATOR_WEBHOOK_RETRY_BASE_SECONDS (0.2), doubling up to
WHATSAPP_EMULATOR_WEBHOOK_RETRY_CAP_SECONDS (5), WHATSAPP_EMULATOR_WEBHOOK_MAX_ATTEMPTS (12)
attempts in all. Stops on SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from whatsapp_emulator import app


async def _serve(host: str, port: int, state: app.State) -> None:
    running = await app.start(host, port, state)
    print(f"whatsapp_emulator: Cloud API on {running.url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await running.close()


def main() -> None:
    """Parses flags (defaults from the environment) and serves."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m whatsapp_emulator")
    parser.add_argument("--host", default=env("WHATSAPP_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("WHATSAPP_EMULATOR_PORT", "8089")))
    parser.add_argument(
        "--access-token", default=env("WHATSAPP_EMULATOR_ACCESS_TOKEN", "local-whatsapp-token")
    )
    parser.add_argument(
        "--app-secret", default=env("WHATSAPP_EMULATOR_APP_SECRET", "local-whatsapp-app-secret")
    )
    parser.add_argument("--webhook-url", default=env("WHATSAPP_EMULATOR_WEBHOOK_URL", ""))
    parser.add_argument(
        "--webhook-retry-base-seconds",
        type=float,
        default=float(env("WHATSAPP_EMULATOR_WEBHOOK_RETRY_BASE_SECONDS", "0.2")),
    )
    parser.add_argument(
        "--webhook-retry-cap-seconds",
        type=float,
        default=float(env("WHATSAPP_EMULATOR_WEBHOOK_RETRY_CAP_SECONDS", "5")),
    )
    parser.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=int(env("WHATSAPP_EMULATOR_WEBHOOK_MAX_ATTEMPTS", "12")),
    )
    args = parser.parse_args()
    state = app.State(
        access_token=args.access_token,
        app_secret=args.app_secret,
        webhook_url=args.webhook_url,
        webhook_retry_base_seconds=max(0.0, args.webhook_retry_base_seconds),
        webhook_retry_cap_seconds=max(0.0, args.webhook_retry_cap_seconds),
        webhook_max_attempts=max(1, args.webhook_max_attempts),
    )
    asyncio.run(_serve(args.host, args.port, state))


if __name__ == "__main__":
    main()
