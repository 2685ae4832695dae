"""``python -m chaos [--short]``: the chaos scenario; exit status 1 on any difference."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from chaos import scenario


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="one round, fewer kills (CI)")
    parser.add_argument("--logs", type=Path, default=None, help="directory for process logs")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="askvault-chaos-logs-"))
    shape = scenario.SHORT if args.short else scenario.LONG
    raise SystemExit(asyncio.run(scenario.run(shape, logs)))


if __name__ == "__main__":
    main()
