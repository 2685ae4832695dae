"""A service whose start fails half-way (its port is taken) leaves nothing running."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from runtime import server
from tests.registry import SERVICES


@pytest.mark.parametrize("entry", SERVICES, ids=[entry.name for entry in SERVICES])
async def test_a_start_that_fails_leaves_no_task_or_connection_behind(
    entry: object, database_url: str
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        service, settings = entry.build(database_url, grpc_port=port)  # type: ignore[attr-defined]
        before = asyncio.all_tasks()
        with pytest.raises(RuntimeError):
            await server.start(service, settings)
    # What was cancelled ends within a few turns of the loop; give it a bounded moment.
    deadline = time.monotonic() + 10
    while True:
        left = [task.get_name() for task in asyncio.all_tasks() - before if not task.done()]
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert left == []
