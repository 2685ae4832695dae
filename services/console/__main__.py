"""``python -m console [serve]``: the owner's web console, run by the same runtime as the
other processes (``runtime.server``). It keeps no data, so ``migrate`` has nothing to do."""

from __future__ import annotations

import sys

from console import service
from console.settings import ConsoleSettings
from runtime import server, settings


async def serve(config: ConsoleSettings) -> None:
    """Runs until SIGTERM or SIGINT, then drains."""
    await server.serve_until_signalled(service.NAME, config, lambda: service.start(config))


def main() -> None:
    if sys.argv[1:] == ["migrate"]:
        print("console: no database, nothing to migrate")
        return
    server.run_process(service.NAME, "", lambda: settings.load(ConsoleSettings), serve)


if __name__ == "__main__":
    main()
