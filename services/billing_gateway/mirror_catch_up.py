"""The mirror's catch-up: each workspace's Stripe events list is read for events no webhook
delivered (an endpoint disabled at Stripe, deliveries the edge refused), and those the inbox
lacks are put into it; the webhook worker then processes them as if delivered. The time a
pass reached bounds how old the mirror's data may be (Freshness.caught_up_to)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg

from billing_gateway import gateway_metrics, inbox_store, mirror_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.mirror import response_time
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import errors
from runtime.database import Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)

# Most events one catch-up pass pages through (100 a page); the rest wait for the next pass.
_CATCH_UP_MAX_PAGES = 50


class MirrorCatchUp:
    """Catches the due workspaces up with Stripe's events list."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        accounts: AccountDirectory,
        settings: BillingGatewaySettings,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._accounts = accounts
        self._settings = settings

    async def step(self) -> bool:
        """Lists the events of one due workspace created since it last caught up and puts
        those the inbox lacks into it (the webhook worker processes them as if delivered);
        False when no workspace is due."""
        async with self._pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                workspace = await mirror_store.claim_catch_up(connection)
                if workspace is None:
                    await transaction.commit()
                    return False
                assert workspace.caught_up_to is not None
                try:
                    added, reached = await self._catch_up(connection, workspace)
                except errors.ServiceError as error:
                    logger.warning(
                        "mirror catch-up failed; tried again next pass",
                        extra={"workspace_id": workspace.workspace_id, "reason": error.reason},
                    )
                    await transaction.rollback()
                    async with self._pool.acquire() as other:
                        await mirror_store.finish_catch_up(
                            other,
                            workspace.workspace_id,
                            workspace.caught_up_to,
                            self._settings.mirror_catch_up_interval_seconds,
                        )
                    return True
                await mirror_store.finish_catch_up(
                    connection,
                    workspace.workspace_id,
                    reached,
                    self._settings.mirror_catch_up_interval_seconds,
                )
                await transaction.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
        if added:
            # Counted once committed: a pass rolled back puts nothing in the inbox.
            gateway_metrics.count_differences(gateway_metrics.MISSED_EVENT, added)
            logger.info(
                "mirror catch-up found events no webhook delivered",
                extra={"workspace_id": workspace.workspace_id, "events": added},
            )
        return True

    async def _catch_up(
        self, connection: Connection, workspace: mirror_store.MirrorWorkspace
    ) -> tuple[int, int]:
        """(events added to the inbox, the time every listed event is in it up to)."""
        assert workspace.caught_up_to is not None
        account = await self._accounts.account(workspace.workspace_id)
        since = workspace.caught_up_to - self._settings.mirror_catch_up_overlap_seconds
        if workspace.connected_at is not None:
            since = max(since, workspace.connected_at - 1)
        cursor = ""
        reached = workspace.caught_up_to
        added = 0
        for page in range(_CATCH_UP_MAX_PAGES):
            params: Any = {"created": {"gt": since}, "limit": 100}
            if cursor:
                params["starting_after"] = cursor
            listed = await self._list_events(account, params)
            if page == 0:
                # Newest first: the first page's answer time bounds everything listed.
                reached = max(reached, response_time(listed))
            for event in listed.data:
                payload = json.dumps(to_json(event), default=str).encode()
                inserted = await inbox_store.insert_event(
                    connection,
                    workspace.workspace_id,
                    str(event.id),
                    str(event.type),
                    datetime.fromtimestamp(int(event.created), UTC),
                    payload,
                )
                added += int(inserted)
            if not listed.has_more or not listed.data:
                return added, reached
            cursor = str(listed.data[-1].id)
        # More than a pass holds: the next pass starts over from the same point, and the
        # events taken in now are not taken twice.
        return added, workspace.caught_up_to

    async def _list_events(self, account: StripeAccount, params: Any) -> Any:
        return await self._gateway.call(
            account, "events.list", lambda c: c.v1.events.list_async(params)
        )

    async def all(self) -> int:
        """Catches up every due workspace now (tests); returns how many."""
        count = 0
        while await self.step():
            count += 1
        return count

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Catches up due workspaces until ``stop`` is set."""
        loop = Periodic(
            "billing-mirror-catch-up",
            self.step,
            Schedule(poll_seconds, busy_seconds=0),
            failure_message="mirror catch-up step failed",
        )
        await loop.run(stop)
