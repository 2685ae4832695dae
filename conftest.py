"""Test fixtures shared by every test: a real PostgreSQL, one clean database per test.

Every service's migrations are applied once to a template database; each test gets a clone
(``CREATE DATABASE ... TEMPLATE``), which takes milliseconds. The server is the one in
``DATABASE_URL`` when set, else an embedded one (pgserver).
"""

from __future__ import annotations

import itertools
import os
import pkgutil
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from runtime import database
from runtime.embedded_postgres import EmbeddedPostgres

ROOT = Path(__file__).parent
_counter = itertools.count()


def _service_schemas() -> list[tuple[str, str]]:
    """(schema, migrations package) of every service that has migrations."""
    found = []
    for module in pkgutil.iter_modules([str(ROOT / "services")]):
        if (ROOT / "services" / module.name / "migrations").is_dir():
            found.append((module.name, f"{module.name}.migrations"))
    return sorted(found)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of the PostgreSQL server's maintenance database."""
    # Not under pytest's tmp_path: pytest prunes old base directories, which would pull the
    # data directory from under an embedded server of another pytest run on the machine.
    data_dir = Path(tempfile.mkdtemp(prefix="askvault-test-pg-"))
    embedded = EmbeddedPostgres(data_dir)
    try:
        yield embedded.url()
    finally:
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_database(postgres_server: str) -> AsyncIterator[str]:
    """Name of a database holding every service's schema, fully migrated."""
    name = f"askvault_tpl_{os.getpid()}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
        for schema, package in _service_schemas():
            await database.migrate_url(
                database.with_database_name(postgres_server, name), schema, package
            )
        yield name
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def database_url(postgres_server: str, template_database: str) -> AsyncIterator[str]:
    """URL of a fresh database for this test, every service's schema migrated."""
    name = f"askvault_t_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        yield database.with_database_name(postgres_server, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def empty_database_url(postgres_server: str) -> AsyncIterator[str]:
    """URL of a fresh, empty database (for migration tests)."""
    name = f"askvault_e_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield database.with_database_name(postgres_server, name)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
