"""Runs one of the repository's harnesses (``python -m chaos --short``, the restore drill,
the soak) as a test does: its own process, in its own process group so that a run that
overstays is stopped with every process it started, its output kept in a file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Seconds a run gets to stop its processes after SIGTERM before they are killed.
STOP_SECONDS = 20


async def run_module(
    module: str, arguments: list[str], output_file: Path, limit_seconds: float
) -> tuple[int, str]:
    """Runs ``python -m module arguments`` from the repository's root; (exit code, output).
    A run over ``limit_seconds`` (kept under the hung-test watchdog of conftest.py, so that
    a stuck run fails with its own output) is stopped and fails the test."""
    with output_file.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *arguments,
            cwd=ROOT,
            env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"},
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(process.wait(), timeout=limit_seconds)
        except TimeoutError:
            await stop_group(process)
            printed = output_file.read_text(errors="replace")
            pytest.fail(f"python -m {module} took over {limit_seconds} s:\n{printed}")
        finally:
            if process.returncode is None:
                await stop_group(process)
    assert process.returncode is not None
    return process.returncode, output_file.read_text(errors="replace")


async def stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the run's process group (the harness stops what it started), then SIGKILL
    to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
