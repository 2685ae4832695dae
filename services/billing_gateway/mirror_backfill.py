"""The mirror's backfill: when an account is connected (Mirror.start), every list Stripe
holds for it is copied into the mirror a page at a time, resuming from its cursor after a
failure, at most the configured pages per second. Until every list is copied the mirror
answers no read (Freshness.complete)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from billing_gateway import mirror_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.mirror import Mirror, response_time
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeGateway, to_json
from runtime import errors
from runtime.database import Connection
from runtime.periodic import Periodic, Schedule

logger = logging.getLogger(__name__)

Json = dict[str, Any]

# Backoff of a backfill page that failed: it resumes from its cursor after this long.
_BACKFILL_RETRY_SECONDS = 5.0
# What each backfilled list expands, and its extra parameters.
_LIST_PARAMS: dict[str, Json] = {
    "customers": {"expand": ["data.invoice_settings.default_payment_method"]},
    # Without status=all Stripe lists no canceled subscription.
    "subscriptions": {"status": "all", "expand": ["data.default_payment_method"]},
}


def _list_service(client: Any, list_name: str) -> Any:
    return {
        "products": client.v1.products,
        "prices": client.v1.prices,
        "customers": client.v1.customers,
        "subscriptions": client.v1.subscriptions,
        "invoices": client.v1.invoices,
        "charges": client.v1.charges,
        "refunds": client.v1.refunds,
    }[list_name]


class MirrorBackfill:
    """Copies the due backfills' pages into the mirror."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        accounts: AccountDirectory,
        settings: BillingGatewaySettings,
        mirror: Mirror,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._accounts = accounts
        self._settings = settings
        self._mirror = mirror

    async def step(self) -> bool:
        """Copies one page of one due backfill; False when none is due."""
        async with self._pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                backfill = await mirror_store.claim_backfill(connection)
                if backfill is None:
                    await transaction.commit()
                    return False
                try:
                    copied, cursor, done = await self._copy_page(connection, backfill)
                except errors.ServiceError as error:
                    await transaction.rollback()
                    logger.warning(
                        "mirror backfill interrupted; resumes from its cursor",
                        extra={
                            "workspace_id": backfill.workspace_id,
                            "object_type": backfill.object_type,
                            "cursor": backfill.cursor,
                            "reason": error.reason,
                        },
                    )
                    async with self._pool.acquire() as other:
                        await mirror_store.defer_backfill(
                            other,
                            backfill,
                            f"{error.reason}: {error.message}",
                            _BACKFILL_RETRY_SECONDS,
                        )
                    return True
                await mirror_store.advance_backfill(connection, backfill, cursor, done, copied)
                await transaction.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
        logger.info(
            "mirror backfill page copied",
            extra={
                "workspace_id": backfill.workspace_id,
                "object_type": backfill.object_type,
                "objects_copied": backfill.objects_copied + copied,
                "pages_copied": backfill.pages_copied + 1,
                "done": done,
            },
        )
        return True

    async def _copy_page(
        self, connection: Connection, backfill: mirror_store.BackfillRecord
    ) -> tuple[int, str, bool]:
        account = await self._accounts.account(backfill.workspace_id)
        params: Any = {
            "limit": self._settings.mirror_backfill_page_size,
            **_LIST_PARAMS.get(backfill.object_type, {}),
        }
        if backfill.cursor:
            params["starting_after"] = backfill.cursor
        listed = await self._gateway.call(
            account,
            f"{backfill.object_type}.list",
            lambda c: _list_service(c, backfill.object_type).list_async(params),
        )
        at = response_time(listed)
        objects = [to_json(item) for item in listed.data]
        for obj in objects:
            await self._mirror.take(connection, backfill.workspace_id, obj, at, "backfill")
        cursor = str(objects[-1]["id"]) if objects else backfill.cursor
        return len(objects), cursor, not listed.has_more

    async def run(self, stop: asyncio.Event) -> None:
        """Copies pages until ``stop`` is set, at most the configured pages per second."""
        pause = 1.0 / self._settings.mirror_backfill_pages_per_second
        loop = Periodic(
            "billing-mirror-backfill",
            self.step,
            # A page copied: the next after the pause; none due (or a failure): a second.
            Schedule(max(pause, 1.0), busy_seconds=pause),
            failure_message="mirror backfill step failed",
        )
        await loop.run(stop)

    async def all(self) -> int:
        """Copies every due page now (tests); returns how many pages."""
        pages = 0
        while await self.step():
            pages += 1
        return pages
