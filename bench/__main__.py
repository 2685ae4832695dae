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


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _markdown(results: dict[str, Any]) -> str:
    """One two-column table per scenario: each figure beside its name (baselines are the
    ``baseline_*`` rows, measured in the same run)."""
    lines = [
        "# Benchmark results",
        "",
        f"Run at {results['started_at']} on {results['machine']} (2 cores). Every scenario "
        "measures its own baseline in the same run; `ratio*` rows divide ours by it. "
        "Produced by `make bench`; the raw figures are in `results.json`.",
        "",
    ]
    for name, outcome in results["scenarios"].items():
        lines += [f"## {name}", ""]
        if "error" in outcome:
            lines += [f"failed: `{outcome['error']}`", ""]
            continue
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value)} |" for key, value in _flatten(outcome)]
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
    saved = RESULTS / "results.json"
    if only and saved.exists():
        # A partial run replaces its own scenarios and keeps the others' last figures.
        earlier = json.loads(saved.read_text())
        results["scenarios"] = {**earlier.get("scenarios", {}), **results["scenarios"]}
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "results.md").write_text(_markdown(results) + "\n")
    print(f"wrote {RESULTS / 'results.json'} and {RESULTS / 'results.md'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("only", nargs="*", help="scenario names (default: all)")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite results.md from results.json"
    )
    arguments = parser.parse_args()
    if arguments.render:
        saved = json.loads((RESULTS / "results.json").read_text())
        (RESULTS / "results.md").write_text(_markdown(saved) + "\n")
    else:
        asyncio.run(main(arguments.only))
