"""Runs every benchmark scenario (each ``--runs`` times, 3 by default) and writes
bench/results/results.json and results.md: per scenario, each figure beside its same-run
baseline, the ratio, its goal and whether the median meets it.

``python -m bench [scenario ...] [--runs N]``; ``--render`` only rewrites results.md."""

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

from bench import _report
from bench._harness import Run

RESULTS = Path(__file__).resolve().parent / "results"


def _scenarios(only: list[str]) -> list[str]:
    names = [
        module.name
        for module in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not module.name.startswith("_") and module.name not in {"results"}
    ]
    unknown = set(only) - set(names)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from {names}")
    return [name for name in sorted(names) if not only or name in only]


def _print_summary(name: str, summary: list[dict[str, Any]]) -> None:
    for row in summary:
        ratio = f" ratio {row['ratio']['median']}" if row["ratio"] else ""
        verdict = f" [{row['goal']}: {row['verdict']}]" if row["goal"] else ""
        print(f"  {name}: {row['figure']} = {row['value']['median']} {row['unit']}{ratio}{verdict}")


async def _scenario(name: str, runs: int) -> dict[str, Any]:
    module = importlib.import_module(f"bench.{name}")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    done: list[Run] = []
    errors: list[str] = []
    for number in range(1, runs + 1):
        print(f"bench {name} run {number}/{runs} ...", flush=True)
        try:
            done.append(await module.run())
        except Exception as error:  # a failed run is reported, the others still run
            errors.append(f"run {number}: {type(error).__name__}: {error}"[:500])
            print(f"  failed: {errors[-1]}", flush=True)
    outcome: dict[str, Any] = {
        "about": (module.__doc__ or "").strip().replace("\n", " "),
        "summary": _report.summarize(done) if done else [],
        "details": _report.details(done) if done else {},
        "errors": errors,
        "runs": len(done),
        "started_at": started_at,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    _print_summary(name, outcome["summary"])
    return outcome


async def main(only: list[str], runs: int) -> None:
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "runs": runs,
        "scenarios": {},
    }
    began = time.perf_counter()
    for name in _scenarios(only):
        results["scenarios"][name] = await _scenario(name, runs)
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / "results.json"
    if only and saved.exists():
        # A partial run replaces its own scenarios and keeps the others' last figures.
        earlier = json.loads(saved.read_text())
        results["scenarios"] = {**earlier.get("scenarios", {}), **results["scenarios"]}
    saved.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (RESULTS / "results.md").write_text(_report.markdown(results) + "\n")
    print(f"wrote {saved} and {RESULTS / 'results.md'} in {results['wall_seconds']:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("only", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite results.md from results.json"
    )
    arguments = parser.parse_args()
    if arguments.render:
        saved = json.loads((RESULTS / "results.json").read_text())
        (RESULTS / "results.md").write_text(_report.markdown(saved) + "\n")
    else:
        asyncio.run(main(arguments.only, max(1, arguments.runs)))
