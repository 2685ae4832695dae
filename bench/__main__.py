"""Runs every benchmark scenario and writes bench/results/results.json and results.md."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import pkgutil
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _scenarios(only: list[str]) -> list[str]:
    names = [
        module.name
        for module in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not module.name.startswith("_") and module.name not in {"results"}
    ]
    return [name for name in sorted(names) if not only or name in only]


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run at {results['started_at']} on {results['machine']}; "
        "each scenario measures its own baseline in the same run.",
        "",
    ]
    for name, outcome in results["scenarios"].items():
        lines += [f"## {name}", ""]
        if "error" in outcome:
            lines += [f"failed: `{outcome['error']}`", ""]
            continue
        rows = outcome.get("rows") or [outcome]
        keys = sorted({key for row in rows for key in row if not isinstance(row[key], dict | list)})
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in rows:
            cells = []
            for key in keys:
                value = row.get(key, "")
                cells.append(f"{value:,.2f}" if isinstance(value, float) else str(value))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


async def main(only: list[str]) -> None:
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "scenarios": {},
    }
    for name in _scenarios(only):
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        print(f"bench {name} ...", flush=True)
        started = time.perf_counter()
        try:
            outcome = await module.run()
        except Exception as error:  # a failed scenario is reported, the others still run
            outcome = {"error": f"{type(error).__name__}: {error}"}
        outcome["wall_seconds"] = round(time.perf_counter() - started, 1)
        results["scenarios"][name] = outcome
        print(json.dumps(outcome, indent=2, default=str), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "results.md").write_text(_markdown(results) + "\n")
    print(f"wrote {RESULTS / 'results.json'} and {RESULTS / 'results.md'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("only", nargs="*", help="scenario names (default: all)")
    asyncio.run(main(parser.parse_args().only))
