"""``python -m chaos [--short]``: the chaos scenario; exit status 1 on any difference."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from chaos import scenario


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="one round, fewer kills (CI)")
    parser.add_argument("--logs", type=Path, default=None, help="directory for process logs")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="askvault-chaos-logs-"))
    shape = scenario.SHORT if args.short else scenario.LONG
    raise SystemExit(asyncio.run(until_terminated(scenario.run(shape, logs))))


async def until_terminated(run: Coroutine[Any, Any, int]) -> int:
    """Runs the scenario; SIGTERM or SIGINT cancels it, so that it stops every process and
    the PostgreSQL it started on the way out (a test that gives up on a run sends SIGTERM)."""
    main_task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main_task.cancel)
    try:
        return await main_task
    except asyncio.CancelledError:
        print("chaos: terminated; every process it started is stopped", flush=True)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    main()
