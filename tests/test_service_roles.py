"""Each service runs as its own role that reads and writes rows but changes no schema: the
migrations create the group role and grant it every table (a migration that adds a table and
forgets the grant fails here), with policy's audit log INSERT and SELECT only."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from importlib import resources

import asyncpg
import pytest

from conftest import _service_schemas
from runtime import database

# Tables the service may add to and read, but never change.
APPEND_ONLY = {("policy", "audit_events")}
# Queues the service may add to, read and empty, but never change: policy's recorded audit
# entries, which its triggers let go only once they are chained (migration 0006).
APPEND_AND_REMOVE = {("policy", "audit_pending")}


@pytest.fixture
async def superuser(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", [schema for schema, _ in _service_schemas()])
async def test_the_service_role_has_row_access_to_every_table_and_no_more(
    superuser: asyncpg.Connection, schema: str
) -> None:
    role = database.service_role(schema)
    assert await superuser.fetchval(
        "SELECT NOT rolcanlogin AND NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb"
        " FROM pg_roles WHERE rolname = $1",
        role,
    )
    assert await superuser.fetchval("SELECT has_schema_privilege($1, $2, 'USAGE')", role, schema)
    assert not await superuser.fetchval(
        "SELECT has_schema_privilege($1, $2, 'CREATE')", role, schema
    )
    tables = await superuser.fetch(
        "SELECT c.oid AS name, c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        schema,
    )
    assert tables
    for table in tables:
        granted = {
            privilege
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES")
            if await superuser.fetchval(
                "SELECT has_table_privilege($1, $2::oid, $3)", role, table["name"], privilege
            )
        }
        if table["relname"] == "schema_migrations":
            expected: set[str] = set()
        elif (schema, table["relname"]) in APPEND_ONLY:
            expected = {"SELECT", "INSERT"}
        elif (schema, table["relname"]) in APPEND_AND_REMOVE:
            expected = {"SELECT", "INSERT", "DELETE"}
        else:
            expected = {"SELECT", "INSERT", "UPDATE", "DELETE"}
        assert granted == expected, f"{schema}.{table['relname']}"
    for sequence in await superuser.fetch(
        "SELECT c.oid AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind = 'S'",
        schema,
    ):
        assert await superuser.fetchval(
            "SELECT has_sequence_privilege($1, $2::oid, 'USAGE')", role, sequence["name"]
        )


async def test_creating_the_group_role_is_safe_when_processes_race(database_url: str) -> None:
    """The migration's role block and the login helper, run at once on one cluster."""
    schema = f"race{os.getpid()}"
    group = database.service_role(schema)
    block = (
        resources.files("policy.migrations")
        .joinpath("0004_service_role.sql")
        .read_text(encoding="utf-8")
    )
    start = block.index("DO $$")
    block = block[start : block.index("$$;", start) + 3].replace(
        database.service_role("policy"), group
    )
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(connection.execute(block) for connection in connections))
        await asyncio.gather(
            *(
                database.ensure_login_role(
                    connection, schema, f"{group}_login", "pw", reset_password=False
                )
                for connection in connections
            )
        )
        assert await connections[0].fetchval(
            "SELECT pg_has_role($1, $2, 'MEMBER')", f"{group}_login", group
        )
    finally:
        await connections[0].execute(f"DROP ROLE IF EXISTS {group}_login")
        await connections[0].execute(f"DROP ROLE IF EXISTS {group}")
        for connection in connections:
            await connection.close()
