"""Test fixtures shared by every test: a real PostgreSQL, one clean database per test.

Every service's migrations are applied once to a template database; each test gets a clone
(``CREATE DATABASE ... TEMPLATE``), which takes milliseconds. The server is the one in
``DATABASE_URL`` when set, else an embedded one (pgserver).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pkgutil
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
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


# The test files that take longest, started first: `make test` runs the suite on two
# pytest-xdist workers (--dist loadfile, whole files per worker), and long files left for the
# end would leave one worker idle while the other finishes them. Measured with --durations;
# a file missing here only runs later.
_LONGEST_FIRST = (
    "tests/e2e/test_start_stop.py",
    "tests/chaos/test_chaos_short.py",
    "tests/chaos/test_restore_drill_short.py",
    "tests/deploy/test_image_install.py",
    "tests/deploy/test_replicas.py",
    "tests/devstack/test_demo.py",
    "tests/console/test_console_browser.py",
    "tests/security/test_fuzz_grpc.py",
    "tests/deploy/test_drain.py",
    "services/notifier/tests/test_crash.py",
    "tests/deploy/test_monitoring.py",
)


# A test that needs none of these (directly or through its fixtures) and is not marked slow
# or integration is a unit test: ``make test-unit`` (-m unit) runs those alone, without a
# PostgreSQL or any server. A test that starts a server in its own body is marked
# ``integration`` (module pytestmark); the guard below fails a unit test that listens on a
# socket, connects to PostgreSQL, starts a gRPC server or a process, so the rule stays true.
_SERVER_FIXTURES = frozenset(
    {
        "postgres_server",
        # The emulators', the CLI contract's and the identity provider's servers.
        "emulator",
        "model",
        "webhook_sink",
        "served",
        "provider_site",
    }
)
_NOT_UNIT_MARKERS = ("slow", "integration", "stripe_live", "soak")


def _is_unit(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(name) for name in _NOT_UNIT_MARKERS):
        return False
    return _SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers given here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the unit tests; then orders the files above first, then the files with the
    most tests (the end-to-end ones start a system per test), so that neither worker is left
    with a long file at the end."""
    for item in items:
        if _is_unit(item):
            item.add_marker(pytest.mark.unit)
    rank = {path: index for index, path in enumerate(_LONGEST_FIRST)}
    tests_in: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        tests_in[path] = tests_in.get(path, 0) + 1

    def order(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank)), -tests_in[path]

    items.sort(key=order)  # stable: a file's tests keep their order


def _refuse_in_unit_test(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"a unit test may not {what}: mark its module pytest.mark.integration")

    return refuse


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a unit test, listening on a socket, reaching PostgreSQL, starting a gRPC server or
    a process fails the test (see _is_unit)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "listen", _refuse_in_unit_test("listen on a socket"))
        patch.setattr(asyncpg, "connect", _refuse_in_unit_test("connect to PostgreSQL"))
        patch.setattr(asyncpg, "create_pool", _refuse_in_unit_test("connect to PostgreSQL"))
        patch.setattr(grpc.aio, "server", _refuse_in_unit_test("start a gRPC server"))
        patch.setattr(subprocess, "Popen", _refuse_in_unit_test("start a process"))
        patch.setattr(asyncio, "create_subprocess_exec", _refuse_in_unit_test("start a process"))
        yield


# A test (setup, call and teardown together) that runs this long is hung, not slow: the
# slowest one takes about a minute. Rather than let CI wait forever, print where every
# asyncio task and thread is, then end the run with a failure.
_HUNG_TEST_SECONDS = float(os.environ.get("ASKVAULT_HUNG_TEST_SECONDS", "300"))


@dataclass
class _Progress:
    """Where the running test is, for the hung-test dump: its phase and the fixtures set up
    and not yet finalized (a teardown finalizes them last first, so the last one listed is
    the one being finalized)."""

    phase: str = ""
    fixtures: list[str] = field(default_factory=list)


_progress = _Progress()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Generator[None, object, object]:
    result = yield
    _progress.fixtures.append(f"{fixturedef.argname} ({fixturedef.scope})")
    return result


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef[Any]) -> None:
    name = f"{fixturedef.argname} ({fixturedef.scope})"
    if name in _progress.fixtures:
        _progress.fixtures.reverse()
        _progress.fixtures.remove(name)
        _progress.fixtures.reverse()


def _coroutine_chain(task: asyncio.Task[Any]) -> list[str]:
    """Frames from the task's coroutine down to what it awaits now (``get_stack`` shows only
    the outermost frame of a suspended coroutine), then the future it waits on."""
    lines = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        frame = frame or getattr(awaitable, "gi_frame", None)
        if frame is None:
            break
        lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = (
            getattr(awaitable, "cr_await", None)
            or getattr(awaitable, "ag_await", None)
            or getattr(awaitable, "gi_yieldfrom", None)
        )
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None:
        named = f"task {waiter.get_name()}" if isinstance(waiter, asyncio.Task) else repr(waiter)
        lines.append(f"    waiting on: {named}")
    return lines


def _dump_and_exit(nodeid: str, capture: Any) -> None:
    import faulthandler
    import gc
    import sys

    if capture is not None:
        # Writes must reach the real stderr, not pytest's capture of it.
        capture.suspend_global_capture(in_=True)
    err = sys.__stderr__
    assert err is not None
    err.write(f"\n*** {nodeid} ran longer than {_HUNG_TEST_SECONDS:.0f} s: hung")
    err.write(f" in its {_progress.phase or 'unknown'} phase.\n")
    if _progress.fixtures:
        err.write("*** fixtures set up and not finalized (a teardown finalizes the last first):\n")
        for name in _progress.fixtures:
            err.write(f"    {name}\n")
    err.write("*** tasks:\n")
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Task) and not obj.done():
            err.write(f"--- task {obj.get_name()}\n")
            for line in _coroutine_chain(obj):
                err.write(line + "\n")
    err.write("*** threads:\n")
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.flush()
    os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    import threading

    capture = item.config.pluginmanager.getplugin("capturemanager")
    watchdog = threading.Timer(_HUNG_TEST_SECONDS, _dump_and_exit, args=(item.nodeid, capture))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup() -> Iterator[None]:
    _progress.phase = "setup"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call() -> Iterator[None]:
    _progress.phase = "call"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown() -> Iterator[None]:
    _progress.phase = "teardown"
    yield
