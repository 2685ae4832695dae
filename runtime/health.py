"""Health made of components: the server is SERVING only while every component is well."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from grpc_health.v1 import health, health_pb2

from runtime import periodic

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "shutting_down"
DATABASE = "database"
# Health-check name a liveness probe asks for: SERVING while the process answers at all, so
# that a database outage or a drain (NOT_SERVING for readiness) does not get pods restarted.
LIVENESS = "liveness"


class Health:
    """Tracks named components and publishes the overall status for the server ("") and for
    each of its services."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._service_names = ["", *service_names]
        # A component is unhealthy until it reports; shutting_down is well until SIGTERM.
        self._components: dict[str, bool] = {SHUTTING_DOWN: True}

    @property
    def serving(self) -> bool:
        """Whether every component is well."""
        return all(self._components.values())

    def components(self) -> dict[str, bool]:
        """A copy of the component states."""
        return dict(self._components)

    async def set_component(self, name: str, healthy: bool) -> None:
        """Records a component's state and republishes the overall status if it changed."""
        before = self.serving if self._components else None
        previous = self._components.get(name)
        self._components[name] = healthy
        if previous != healthy:
            logger.info("health component changed", extra={"component": name, "ok": healthy})
        if before != self.serving or previous is None:
            await self._publish()

    async def _publish(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self.servicer.set(name, status)
        await self.servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)

    async def watch(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        interval_seconds: float,
        stop: asyncio.Event,
    ) -> None:
        """Runs a probe every ``interval_seconds`` until ``stop`` is set (runtime.periodic);
        the component is well while the probe returns in time. The probe's bound is
        ``asyncio.timeout``, not ``wait_for``, which on Python 3.11 can swallow a cancel (see
        ``runtime.tasks``); the stop event ends the loop anyway."""

        async def step() -> None:
            try:
                async with asyncio.timeout(max(interval_seconds, 1.0)):
                    await probe()
                healthy = True
            except asyncio.CancelledError:
                raise
            except Exception:
                healthy = False
            await self.set_component(name, healthy)

        await periodic.Periodic(
            f"health-{name}", step, periodic.Schedule(interval_seconds=interval_seconds)
        ).run(stop)
