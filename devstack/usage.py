"""What a process uses, read from /proc (Linux, where the stack's benchmarks and the soak
run; psutil is not pinned): its resident memory, peak and now, and its CPU time."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak since start) of a process, in MiB."""
    found = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                found["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                found["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat (1-based, the name removed).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
