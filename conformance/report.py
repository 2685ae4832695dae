"""Each check's result, printed as a table and written as JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table


class CheckFailed(AssertionError):
    """A check found the deployment off its contract; the message says how."""


def expect(condition: bool, message: str) -> None:
    """Fails the running check with ``message`` unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Result:
    """One check: its name, whether it passed, what it saw, how long it took."""

    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass
class Report:
    """Every check of one run."""

    target: str
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.passed for result in self.results)

    async def run(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Runs one check; a CheckFailed (or any error talking to the target) fails it."""
        started = time.perf_counter()
        try:
            detail, passed = await check(), True
        except CheckFailed as failure:
            detail, passed = str(failure), False
        except Exception as error:  # any error talking to the target fails this check
            detail, passed = f"{type(error).__name__}: {error}", False
        self.results.append(Result(name, passed, detail, round(time.perf_counter() - started, 3)))

    def print(self, console: Console) -> None:
        table = Table(title=f"Conformance of {self.target}")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for result in self.results:
            mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
            table.add_row(result.name, mark, result.detail)
        console.print(table)
        failed = sum(not result.passed for result in self.results)
        console.print(f"{len(self.results) - failed} passed, {failed} failed")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "target": self.target,
            "passed": self.passed,
            "results": [asdict(r) for r in self.results],
        }
        path.write_text(json.dumps(body, indent=2) + "\n")
