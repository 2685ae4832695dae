"""``python -m soak [--minutes N]``: the soak (``make soak``); exit status 1 when a criterion
fails. SOAK_MINUTES gives the default length (20 minutes)."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from chaos.__main__ import until_terminated
from soak import run

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 20)
    )
    parser.add_argument("--warm-up-minutes", type=float, default=3.0)
    parser.add_argument("--interval-seconds", type=float, default=60.0, help="sample period")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where soak.json/.md go")
    parser.add_argument("--logs", type=Path, default=None, help="directory for process logs")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="askvault-soak-logs-"))
    plan = run.Plan(args.minutes, args.warm_up_minutes, args.interval_seconds)
    raise SystemExit(asyncio.run(until_terminated(run.run(plan, logs, args.out))))


if __name__ == "__main__":
    main()
