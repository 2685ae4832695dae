"""Reading the requirement files and their locks (shared by the packaging tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each requirements file and the lock `make lock` compiles from it.
LOCKS: dict[str, str] = {
    "requirements.txt": "requirements.lock",
    "requirements-dev.txt": "requirements-dev.lock",
    "deploy/requirements-check.txt": "deploy/requirements-check.lock",
    "deploy/docker/build-requirements.txt": "deploy/docker/build-requirements.lock",
    "deploy/docker/emulators-requirements.txt": "deploy/docker/emulators-requirements.lock",
    "clients/build-requirements.txt": "clients/build-requirements.lock",
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#\\]+)")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str) -> dict[str, str]:
    """The ``name==version`` lines of one requirements file, not following ``-r``."""
    found: dict[str, str] = {}
    for line in (ROOT / path).read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(3)
    return found


def pins_with_includes(path: str) -> dict[str, str]:
    """The pins of a requirements file and of every file it includes with ``-r``."""
    found = pins(path)
    for line in (ROOT / path).read_text().splitlines():
        if line.startswith("-r "):
            included = ((ROOT / path).parent / line[3:].strip()).resolve()
            found.update(pins_with_includes(str(included.relative_to(ROOT))))
    return found


@dataclass(frozen=True)
class Locked:
    """One package of a lock: its version, how many hashes, and the files requiring it."""

    version: str
    hashes: int
    required_by: frozenset[str]


_LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_VIA_FILE = re.compile(r"^\s*#\s+(?:via )?-r (\S+)$")


def read_lock(path: str) -> dict[str, Locked]:
    """A uv/pip-tools lock: each package with the requirement files (relative to the root)
    that name it directly, from its ``# via -r FILE`` comments."""
    packages: dict[str, Locked] = {}
    name = ""
    version = ""
    hashes = 0
    files: set[str] = set()

    def flush() -> None:
        if name:
            packages[name] = Locked(version, hashes, frozenset(files))

    for line in (ROOT / path).read_text().splitlines():
        match = _LOCKED.match(line)
        if match:
            flush()
            name, version, hashes, files = normalize(match.group(1)), match.group(2), 0, set()
        elif "--hash=sha256:" in line:
            hashes += 1
        else:
            via = _VIA_FILE.match(line)
            if via and name:
                files.add(str((ROOT / via.group(1)).resolve().relative_to(ROOT)))
    flush()
    return packages


def included_files(path: str) -> list[str]:
    """A requirements file and every file it includes with ``-r``, relative to the root."""
    found = [path]
    for line in (ROOT / path).read_text().splitlines():
        if line.startswith("-r "):
            included = ((ROOT / path).parent / line[3:].strip()).resolve()
            found += included_files(str(included.relative_to(ROOT)))
    return found
