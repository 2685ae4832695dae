"""The stack's processes: a ``Child`` is one process of ``make run`` (its command,
environment and readiness check); started with its output in a log file, waited for until
ready, stopped in reverse order (SIGTERM, then SIGKILL after a grace). ``make run``, the
chaos harness and the whole-system benchmarks start their processes with these."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import grpc
from grpc_health.v1 import health_pb2

from devstack import config
from runtime import grpc_typing

# Where ``make run`` keeps its processes' logs (appended to across restarts).
LOGS = config.DATA_DIR / "logs"
# Ports handed out by ``free_ports``: below Linux's ephemeral range (32768-60999), so that
# no outgoing connection of any process on the machine is given one of them between the pick
# and the bind, nor while a killed process is being restarted on its port.
_PORT_RANGE = range(20_000, 32_000)


@dataclass
class Child:
    """A process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool]
    address: str
    process: asyncio.subprocess.Process | None = None
    notes: list[str] = field(default_factory=list)
    # The log file of its output, once started.
    log: Path | None = None


def port_open(port: int) -> Callable[[], bool]:
    """A readiness check: something accepts connections on the local port."""

    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    return check


def serving(port: int) -> Callable[[], bool]:
    """A readiness check: the gRPC server on the local port reports SERVING."""

    def check() -> bool:
        async def ask() -> bool:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = await grpc_typing.health_stub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0
                )
                return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        try:
            return asyncio.run(ask())
        except Exception:
            return False

    return check


def free_ports(count: int) -> list[int]:
    """Distinct free local ports: all bound at once while picking, so no two are the same."""
    picker = random.SystemRandom()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            probe = stack.enter_context(socket.socket())
            port = picker.choice(_PORT_RANGE)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        return ports


def _open_log(child: Child, logs: Path) -> BinaryIO:
    """The log file of a process, appended to across restarts."""
    logs.mkdir(parents=True, exist_ok=True)
    child.log = logs / f"{child.name}.log"
    return child.log.open("ab")


async def start(child: Child, logs: Path = LOGS) -> None:
    """Starts the process (again, after a stop or a kill), its output appended to
    ``logs/<name>.log``; returns at once (``wait_ready`` waits)."""
    with _open_log(child, logs) as log:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv, env={**os.environ, **child.env}, cwd=config.ROOT, stdout=log, stderr=log
        )


def tail(child: Child, lines: int = 15) -> str:
    """The last lines of the process's log ("" before it was started)."""
    if child.log is None or not child.log.exists():
        return ""
    return "\n".join(child.log.read_text(errors="replace").splitlines()[-lines:])


async def wait_ready(child: Child, limit_seconds: float = 60.0) -> None:
    """Returns once the started process is ready; RuntimeError when it exits first or is not
    ready within ``limit_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_seconds
    while loop.time() < deadline:
        assert child.process is not None
        if child.process.returncode is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}")
        if await asyncio.to_thread(child.ready):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} did not become ready in {limit_seconds:.0f}s")


async def stop(children: list[Child], grace: float = 15.0) -> None:
    """SIGTERM in reverse order of start, then SIGKILL what is left after the grace."""
    for child in reversed(children):
        if child.process and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
    for child in reversed(children):
        if child.process is None:
            continue
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await child.process.wait()
