"""The mirror of each workspace's Stripe data in the gateway's own schema, and the workers that
feed it: the webhook worker hands it every event's object; our own writes hand it Stripe's
answer; a backfill copies every list when an account is connected (mirror_backfill.py); and
a catch-up reads Stripe's events list for events no webhook delivered (mirror_catch_up.py).

Which version of an object is kept is decided by Stripe's own times (domain/mirroring.py),
never by arrival order, with the object's row locked while deciding. Reads (reads.py) answer
from here while the data was confirmed within the workspace's freshness bound.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from billing_gateway import inbox_store, mirror_store
from billing_gateway.accounts import AccountDirectory
from billing_gateway.domain import mirroring
from billing_gateway.domain.mirroring import Decision
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import errors
from runtime.database import Connection

logger = logging.getLogger(__name__)

Json = dict[str, Any]

# How each object type is read again from Stripe (a refetch, or a read of a missing object):
# the SDK service and what to expand so the payment method comes along.
_RETRIEVE_EXPAND: dict[str, list[str]] = {
    mirroring.CUSTOMER: ["invoice_settings.default_payment_method"],
    mirroring.SUBSCRIPTION: ["default_payment_method"],
}


def response_time(value: Any) -> int:
    """Stripe's clock at a response (its Date header, Unix seconds); our clock without one."""
    response = getattr(value, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    date = headers.get("date") or headers.get("Date")
    if date:
        with contextlib.suppress(TypeError, ValueError):
            return int(email.utils.parsedate_to_datetime(str(date)).timestamp())
    return int(time.time())


def _service(client: Any, object_type: str) -> Any:
    services = {
        mirroring.CUSTOMER: client.v1.customers,
        mirroring.SUBSCRIPTION: client.v1.subscriptions,
        mirroring.PRODUCT: client.v1.products,
        mirroring.PRICE: client.v1.prices,
        mirroring.INVOICE: client.v1.invoices,
        mirroring.CHARGE: client.v1.charges,
        mirroring.REFUND: client.v1.refunds,
        mirroring.PAYMENT_METHOD: client.v1.payment_methods,
    }
    return services[object_type]


@dataclass(frozen=True)
class Freshness:
    """Whether the mirror may answer a workspace's reads, and how old its data may be."""

    # Every list has been backfilled: what the mirror lacks, Stripe lacks too.
    complete: bool
    max_age_seconds: int
    # Every event up to this time is in the inbox (None before the first catch-up).
    caught_up_to: datetime | None

    def as_of(self, confirmed_at: datetime) -> datetime:
        """When an object was last known current: its own confirmation, or a later catch-up
        that listed no change of it."""
        if self.caught_up_to is not None and self.caught_up_to > confirmed_at:
            return self.caught_up_to
        return confirmed_at

    def fresh(self, confirmed_at: datetime, now: datetime) -> bool:
        """Whether data confirmed then may still be answered with now."""
        return (now - self.as_of(confirmed_at)).total_seconds() <= self.max_age_seconds


class Mirror:
    """Takes versions of Stripe objects in, and answers what it holds and how fresh it is."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: StripeGateway,
        accounts: AccountDirectory,
        settings: BillingGatewaySettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._accounts = accounts
        self._settings = settings
        self._clock = clock
        # Where invoice links may point: Stripe's hosts, and the API's own (the emulator).
        self._link_hosts = mirroring.STRIPE_LINK_HOSTS | {
            urlsplit(settings.stripe_api_base).hostname or ""
        }

    # -- taking versions in ----------------------------------------------------------------

    async def take(
        self,
        connection: Connection,
        workspace_id: str,
        obj: Json,
        version_time: int,
        source: str,
        *,
        deleted: bool = False,
        authoritative: bool = False,
    ) -> Decision:
        """Takes one version of an object (and the objects expanded in it, each on its own);
        returns what was decided for the object itself. Call inside a transaction.
        ``authoritative``: Stripe answered it just now, so a tie is settled in its favour."""
        object_type = str(obj.get("object") or "")
        if object_type not in mirroring.MIRRORED or not obj.get("id"):
            return Decision.IGNORE
        kept, embedded = mirroring.split_embedded(object_type, obj)
        for inner in embedded:
            await self.take(
                connection,
                workspace_id,
                inner,
                version_time,
                source,
                authoritative=authoritative,
            )
        return await self._take_one(
            connection,
            workspace_id,
            object_type,
            kept,
            version_time,
            source,
            deleted=deleted,
            authoritative=authoritative,
        )

    async def _take_one(
        self,
        connection: Connection,
        workspace_id: str,
        object_type: str,
        obj: Json,
        version_time: int,
        source: str,
        *,
        deleted: bool = False,
        authoritative: bool = False,
    ) -> Decision:
        object_id = str(obj["id"])
        deleted = deleted or bool(obj.get("deleted"))
        version_time = max(version_time, mirroring.object_time(obj))
        found = await mirror_store.lock_mirrored(connection, workspace_id, object_type, object_id)
        held = mirroring.Held(*found) if found is not None else None
        if held is not None and deleted:
            # Stripe answers a deleted object with a stub ({id, object, deleted}): the last
            # full version is kept, marked deleted (reads never show it).
            obj = {**held.data, "deleted": True}
        decision = mirroring.decide(object_type, held, {**obj, "deleted": deleted}, version_time)
        if decision is Decision.REFETCH and authoritative:
            # What Stripe answered just now is the newest version there is.
            decision = Decision.STORE
        if decision is Decision.STORE:
            await mirror_store.store_mirrored(
                connection,
                workspace_id,
                object_type,
                object_id,
                customer_id=mirroring.customer_of(object_type, obj)
                or (held.data.get("customer", "") if held is not None else ""),
                created=int(obj.get("created") or 0),
                status=str(obj.get("status") or ""),
                data=obj,
                version_time=version_time,
                version_source=source,
                deleted=deleted,
            )
        elif decision is Decision.CONFIRM:
            await mirror_store.confirm_mirrored(
                connection, workspace_id, object_type, object_id, version_time
            )
        return decision

    async def take_event(
        self, connection: Connection, event: inbox_store.StoredEvent, obj: Json
    ) -> Json | None:
        """Takes the event's object (``obj``, from its payload), in the event's transaction.
        A tie with the held version is settled by reading the object from Stripe; returns
        what Stripe answered then (None when it was not asked, or has no such object)."""
        if not mirroring.is_mirrored_event(event.event_type):
            return None
        object_type = str(obj.get("object") or "")
        if object_type not in mirroring.MIRRORED or not obj.get("id"):
            return None
        deleted = event.event_type.endswith(".deleted") and object_type in (mirroring.DELETABLE)
        created = int(event.created_at.timestamp())
        if mirroring.links_trusted(object_type, obj, self._link_hosts):
            decision = await self.take(
                connection,
                event.workspace_id,
                obj,
                created,
                f"event:{event.event_id}",
                deleted=deleted,
            )
            if decision is not Decision.REFETCH:
                return None
        logger.info(
            "mirror refetch: two versions in one second, or links not at Stripe",
            extra={
                "workspace_id": event.workspace_id,
                "object_type": object_type,
                "object_id": obj["id"],
                "event_id": event.event_id,
            },
        )
        account = await self._accounts.account(event.workspace_id)
        fetched, at = await self.fetch(account, object_type, str(obj["id"]))
        await self._take_fetched(
            connection, event.workspace_id, object_type, str(obj["id"]), fetched, at, "refetch"
        )
        return fetched

    async def _take_fetched(
        self,
        connection: Connection,
        workspace_id: str,
        object_type: str,
        object_id: str,
        fetched: Json | None,
        at: int,
        source: str,
    ) -> None:
        if fetched is None:
            # Gone at Stripe: mark the held copy deleted, if there is one.
            found = await mirror_store.lock_mirrored(
                connection, workspace_id, object_type, object_id
            )
            if found is not None:
                await self._take_one(
                    connection,
                    workspace_id,
                    object_type,
                    {**found[1], "deleted": True},
                    at,
                    source,
                    deleted=True,
                    authoritative=True,
                )
            return
        await self.take(connection, workspace_id, fetched, at, source, authoritative=True)

    async def fetch(
        self, account: StripeAccount, object_type: str, object_id: str
    ) -> tuple[Json | None, int]:
        """The object as Stripe holds it now (None when it is gone) and Stripe's time."""
        params: Any = (
            {"expand": _RETRIEVE_EXPAND[object_type]} if object_type in _RETRIEVE_EXPAND else None
        )
        try:
            found = await self._gateway.call(
                account,
                f"{object_type}s.retrieve",
                lambda c: _service(c, object_type).retrieve_async(object_id, params),
            )
        except errors.ServiceError as error:
            if error.kind is errors.Kind.NOT_FOUND:
                return None, int(time.time())
            raise
        return to_json(found), response_time(found)

    async def take_read(
        self, workspace_id: str, objects: list[Json], response: Any, source: str = "read"
    ) -> None:
        """Objects just read from Stripe (a read that fell back to Stripe, the authoritative
        read before a write, a write's answer), at the response's time. Best effort: the
        caller's answer never waits on the mirror's troubles (a lost update is made good by
        the next event, read or catch-up)."""
        at = response_time(response)
        kept = sorted(
            (obj for obj in objects if obj.get("object") in mirroring.MIRRORED and obj.get("id")),
            # One order of row locks for every writer: fewer deadlocks with the backfill.
            key=lambda obj: (str(obj["object"]), str(obj["id"])),
        )
        if not kept:
            return
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                for obj in kept:
                    await self._take_fetched(
                        connection,
                        workspace_id,
                        str(obj["object"]),
                        str(obj["id"]),
                        obj,
                        at,
                        source,
                    )
        except (asyncpg.PostgresError, OSError):
            logger.exception(
                "mirror: a version read from Stripe not recorded",
                extra={"workspace_id": workspace_id, "source": source},
            )

    async def take_written(self, workspace_id: str, obj: Json) -> None:
        """Stripe's answer to one of our writes (read-your-writes): the next read sees it.
        A refund's answer carries its charge, expanded, which is taken as well."""
        await self.take_read(workspace_id, [obj], None, "write")

    async def get(
        self, connection: Connection, workspace_id: str, object_type: str, object_id: str
    ) -> mirror_store.MirroredObject | None:
        """A held object (deleted ones included)."""
        return await mirror_store.get_mirrored(connection, workspace_id, object_type, object_id)

    async def freshness(self, connection: Connection, workspace_id: str) -> Freshness:
        """Whether the mirror may answer the workspace's reads, and within which bound."""
        found = await mirror_store.mirror_freshness(connection, workspace_id)
        caught_up_to = None
        if found.caught_up_to is not None and found.backfilled:
            caught_up_to = datetime.fromtimestamp(found.caught_up_to, UTC)
        return Freshness(
            found.backfilled,
            found.max_age_seconds or self._settings.mirror_max_age_seconds,
            caught_up_to,
        )

    async def start(self, connection: Connection, workspace_id: str) -> None:
        """A newly connected account: backfill every list; catch up on events from now (the
        webhook endpoint is registered now: earlier events were never meant for us)."""
        await mirror_store.start_mirror(
            connection, workspace_id, int(time.time()), mirroring.BACKFILL_TYPES
        )
        logger.info("mirror backfill scheduled", extra={"workspace_id": workspace_id})
