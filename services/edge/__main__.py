"""``python -m edge [serve|migrate]``: the HTTP edge."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from edge import service
from edge.settings import EdgeSettings
from runtime import clients, database, logs, settings, telemetry

logger = logging.getLogger("edge")


async def serve(config: EdgeSettings) -> None:
    """Runs until SIGTERM or SIGINT, then drains."""
    running = await service.start(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(f"edge listening on {running.url}", flush=True)
    await stopping.wait()
    logger.info("shutdown requested")
    await running.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    command = parser.parse_args().command
    config = settings.load(EdgeSettings)
    logs.configure(service.NAME, config.log_level)
    if command == "migrate":
        applied = asyncio.run(
            database.migrate_url(config.migration_dsn(), service.NAME, service.MIGRATIONS)
        )
        logger.info("migrations applied", extra={"versions": applied})
        return
    telemetry.configure(service.NAME, config.otel_exporter_otlp_endpoint, config.metrics_port)
    # The edge calls the services with its own credential and over TLS when configured.
    clients.configure(
        service.NAME,
        config.service_token_secret.get_secret_value(),
        config.tls_ca_file,
        config.tls_cert_file,
        config.tls_key_file,
    )
    import uvloop

    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
