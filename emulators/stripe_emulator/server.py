"""Command line: options, start-up, optional seeding, graceful stop."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from stripe_emulator import app, seed
from stripe_emulator.state import State

log = logging.getLogger("stripe_emulator")

DEFAULT_PORT = 12111


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stripe_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 12111, 0 = any)"
    )
    parser.add_argument(
        "--seed",
        action="store_true",
        help=f"create the demo catalog and customers for {seed.DEMO_API_KEY}",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="load state from and save it to this JSON file",
    )
    return parser.parse_args(argv)


async def serve(options: argparse.Namespace) -> None:
    state = State()
    emulator = await app.start(
        options.host, options.port, state=state, state_file=options.state_file
    )
    if options.seed:
        print(json.dumps(seed.seed_demo(emulator.state), indent=2), flush=True)
    log.info("stripe emulator listening", extra={"url": emulator.url})
    print(f"stripe emulator listening on {emulator.url}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.close()


def freeze_survivors_of_full_collections() -> Callable[[str, dict[str, int]], None]:
    """After every full collection, moves what survived it to the permanent generation.

    The emulator keeps every object and event it ever made (Stripe keeps them too), so its
    heap only grows. A full collection walks the whole heap: in a 20-minute soak its pause
    grew from 40 to 150 ms (one took 790 ms), and every request waiting behind it looked like
    a slower service (the soak's p99 drift). Real Stripe does not pause longer as an account
    grows. What survived a full collection is mostly the store: freezing it keeps later
    collections to what was made since. A frozen object is still freed when its last
    reference goes; only a reference cycle among frozen objects would never be, and the
    store, which deletes nothing, makes no garbage. Returns the callback (to remove it)."""

    def freeze(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    gc.callbacks.append(freeze)
    return freeze


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    freeze_survivors_of_full_collections()
    asyncio.run(serve(parse_args(argv)))
    return 0
