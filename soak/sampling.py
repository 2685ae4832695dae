"""What the soak samples every interval: per process its RSS, CPU time, open file descriptors
and sockets (from /proc: psutil is not pinned, and Linux is where the soak runs), and the
database's connections per login role and application (pg_stat_activity)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from devstack.usage import cpu_seconds, memory_mb


@dataclass(frozen=True)
class ProcessSample:
    """One process at one instant (zeros once it is gone)."""

    pid: int
    rss_mb: float
    fds: int
    sockets: int
    # CPU time used since the process started (user plus system).
    cpu_seconds: float


def sample_process(pid: int) -> ProcessSample:
    """RSS (VmRSS), CPU time and the process's descriptors, sockets counted apart."""
    fds = sockets = 0
    with contextlib.suppress(OSError):
        directory = Path(f"/proc/{pid}/fd")
        for entry in os.scandir(directory):
            fds += 1
            with contextlib.suppress(OSError):
                if os.readlink(entry.path).startswith("socket:"):
                    sockets += 1
    return ProcessSample(pid, memory_mb(pid)["rss_mb"], fds, sockets, cpu_seconds(pid))


# Every connection to the stack's database but the sampler's own, by role and application
# (each service names its pool's connections after its schema: runtime.database).
_CONNECTIONS = """
SELECT usename, coalesce(nullif(application_name, ''), '-') AS application, count(*) AS n
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
GROUP BY 1, 2 ORDER BY 1, 2
"""


async def database_connections(database_url: str) -> dict[str, int]:
    """``{"role/application": connections}``; ``{"unreachable": 1}`` when the database is not."""
    try:
        connection = await asyncpg.connect(database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return {"unreachable": 1}
    try:
        rows = await connection.fetch(_CONNECTIONS)
    finally:
        await connection.close()
    return {f"{row['usename']}/{row['application']}": int(row["n"]) for row in rows}
