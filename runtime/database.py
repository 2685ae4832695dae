"""PostgreSQL access shared by the services: the asyncpg pool, numbered SQL migrations in
one schema per service, and named queries kept in ``.sql`` files."""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

logger = logging.getLogger(__name__)

# A connection taken from a pool or opened alone; every storage function accepts either.
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_QUERY_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.M)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

# Exceptions that mean "the database cannot be reached right now", not "the query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    # The server refuses the connection for now (max_connections, a role's limit): an edge
    # turn storing its outcome got a 500 instead of a 503 from this.
    asyncpg.TooManyConnectionsError,
)


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """Reads ``NNNN_name.sql`` files of a package (``identity.migrations``), in order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations of {package} are not numbered 1..n: {versions}")
    return found


async def migrate(connection: Connection, schema: str, package: str) -> list[int]:
    """Applies the package's pending migrations to the schema, each in its own transaction,
    under an advisory lock so that replicas starting together apply each one once."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    applied: list[int] = []
    await connection.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
    try:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await connection.fetch(
                f"SELECT version FROM {schema}.schema_migrations"  # noqa: S608 - schema validated above
            )
        }
        for migration in load_migrations(package):
            if migration.version in done:
                continue
            async with connection.transaction():
                await connection.execute(f"SET LOCAL search_path TO {schema}, public")
                await connection.execute(migration.sql)
                await connection.execute(
                    f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",  # noqa: S608
                    migration.version,
                    migration.name,
                )
            logger.info(
                "migration applied",
                extra={"schema": schema, "version": migration.version, "migration": migration.name},
            )
            applied.append(migration.version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied


async def migrate_url(dsn: str, schema: str, package: str) -> list[int]:
    """Connects once and applies the package's migrations (the ``migrate`` command)."""
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection, schema, package)
    finally:
        await connection.close()


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first on their search path.

    A released connection is not sent asyncpg's reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): one round trip and one transaction per release, for session state
    no service keeps on a pooled connection (advisory locks are transaction-scoped, nothing
    listens, nothing SETs beyond a transaction, no cursor outlives one). asyncpg still rolls
    back a transaction left open and drops listeners before the connection is reused."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=5.0,
        command_timeout=30.0,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's own rollback of an open transaction."""


class Queries:
    """Named SQL statements from a ``.sql`` file: each starts with ``-- name: query_name``."""

    def __init__(self, package: str, filename: str = "queries.sql") -> None:
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        parts = _QUERY_NAME.split(text)
        self._sql: dict[str, str] = {
            name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)
        }

    def __getattr__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None

    def names(self) -> list[str]:
        """Every query name in the file."""
        return sorted(self._sql)


def with_database_name(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def with_credentials(url: str, user: str, password: str) -> str:
    """The same server and database URL, logging in as another role."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit(parts._replace(netloc=login + host))


def service_role(schema: str) -> str:
    """The NOLOGIN group role a service runs as (its migrations create it and grant it row
    access to the schema); login roles are made members of it."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    return f"askvault_{schema}_service"


async def ensure_login_role(
    connection: Connection, schema: str, login: str, password: str, *, reset_password: bool = True
) -> None:
    """Creates (if absent) the service's group role and a login role that is a member of it,
    with this password (set again on an existing login unless ``reset_password`` is False).
    For the local stack and the tests, which connect as a superuser; in production a DBA does
    this once (deploy/README.md). Safe when several processes race on one cluster: a role
    another one created meanwhile is fine."""
    if not _SCHEMA_NAME.match(login):
        raise ValueError(f"bad role name {login!r}")
    group = service_role(schema)
    # Utility commands take no parameters: the password goes in as a quoted literal.
    quoted = await connection.fetchval("SELECT quote_literal($1)", password)
    # Made by the service's migrations, an earlier run or a racing process: fine.
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await connection.execute(f"CREATE ROLE {group} NOLOGIN")
    try:
        await connection.execute(f"CREATE ROLE {login} LOGIN PASSWORD {quoted} IN ROLE {group}")
        created = True
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        created = False
    if not await connection.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", login, group):
        await connection.execute(f"GRANT {group} TO {login}")
    if not created and reset_password:
        await connection.execute(f"ALTER ROLE {login} PASSWORD {quoted}")


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    """A record as a plain dict, or None."""
    return dict(record) if record is not None else None
