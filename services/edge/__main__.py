"""``python -m edge [serve|migrate]``: the HTTP edge, run by the same runtime as the gRPC
services (``runtime.server``)."""

from __future__ import annotations

from edge import service
from edge.settings import EdgeSettings
from runtime import server, settings


async def serve(config: EdgeSettings) -> None:
    """Runs until SIGTERM or SIGINT, then drains."""
    await server.serve_until_signalled(service.NAME, config, lambda: service.start(config))


def main() -> None:
    # The edge's metrics are served at /metrics on its HTTP port (http_api.Edge.metrics).
    server.run_process(
        service.NAME,
        service.MIGRATIONS,
        lambda: settings.load(EdgeSettings),
        serve,
        serves_metrics=True,
    )


if __name__ == "__main__":
    main()
