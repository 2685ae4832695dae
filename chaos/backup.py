"""Backup and restore of every service schema with PostgreSQL's own tools: ``pg_dump`` of the
schemas in one snapshot (custom format), ``pg_restore`` into a new database. The tools are
those of the server's major version or newer: the embedded server's own binaries (pip
pgserver ships them) when present, else the ones on PATH."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from devstack import config
from runtime import database

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


def service_schemas() -> list[str]:
    """Every service's schema (one per service with migrations), as the services name them."""
    return sorted(
        path.parent.parent.name
        for path in (config.ROOT / "services").glob("*/migrations/__init__.py")
    )


def tool(name: str) -> str:
    """The path of ``pg_dump``/``pg_restore``: the embedded server's binaries first (they match
    the server the harness starts), then PATH."""
    try:
        import pgserver._commands as commands  # type: ignore[import-untyped]

        bundled = Path(commands.POSTGRES_BIN_PATH) / name
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL client tools")
    return found


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({process.returncode}): {err.decode()}")
    return out.decode()


async def _check_versions(database_url: str, dump: str) -> None:
    """pg_dump refuses a server newer than itself: say which tools to use before trying."""
    connection = await asyncpg.connect(database_url)
    try:
        server = int(await connection.fetchval("SHOW server_version_num")) // 10000
    finally:
        await connection.close()
    match = _VERSION.search(await _run(dump, "--version"))
    client = int(match.group(1)) if match else 0
    if client < server:
        raise RuntimeError(
            f"{dump} is PostgreSQL {client}, the server {server}: use client tools >= {server}"
        )


@dataclass(frozen=True)
class Backup:
    """One dump: where it is, what it holds and how long it took."""

    path: Path
    schemas: list[str]
    size_bytes: int
    seconds: float
    # The server's time when the dump's snapshot was taken (just before pg_dump started).
    taken_at: float


async def dump(database_url: str, path: Path) -> Backup:
    """``pg_dump -Fc`` of every service schema: one consistent snapshot of all of them
    (pg_dump reads in a single repeatable-read transaction) while the services keep writing."""
    pg_dump = tool("pg_dump")
    await _check_versions(database_url, pg_dump)
    schemas = service_schemas()
    began = time.monotonic()
    taken_at = time.time()
    selected = [f"--schema={schema}" for schema in schemas]
    await _run(pg_dump, "--format=custom", f"--file={path}", *selected, database_url)
    size = (await asyncio.to_thread(path.stat)).st_size
    return Backup(path, schemas, size, time.monotonic() - began, taken_at)


async def restore(backup: Backup, server_url: str, name: str) -> tuple[str, float]:
    """Creates database ``name`` on the server of ``server_url`` and restores the dump into
    it in one transaction; (its URL, seconds it took)."""
    began = time.monotonic()
    connection = await asyncpg.connect(server_url)
    try:
        # A name of our own, not input: safe to splice (CREATE DATABASE takes no parameter).
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = database.with_database_name(server_url, name)
    await _run(
        tool("pg_restore"),
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={url}",
        str(backup.path),
    )
    return url, time.monotonic() - began
