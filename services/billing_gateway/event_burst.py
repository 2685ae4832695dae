"""What the events of one claimed batch share (``Burst``), and the messages events send
(``EventMessages``): the customer's recipients, looked up once per batch, and one message
per recipient under a key derived from the event, so a retry repeats nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from askvault.notifier.v1 import notifier_pb2
from billing_gateway import inbox_store, mirror_reads
from billing_gateway.mirror import Freshness, Mirror
from billing_gateway.notices import Notices
from runtime.database import Connection

# Most (workspace, customer) recipient lists the worker keeps between lookups.
_RECIPIENTS_CACHE_MAX = 10_000


@dataclass
class Burst:
    """What the events of one claimed batch share: the claim's connection (and transaction),
    the time, and each workspace's mirror freshness, read once."""

    connection: Connection
    now: datetime
    freshness: dict[str, Freshness] = field(default_factory=dict)
    # The batch's events take their objects into the mirror one at a time: two of them may
    # carry versions of one embedded object (a product, a payment method).
    mirror_turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Metrics of what the batch did, counted once its transaction committed (a batch rolled
    # back is applied again, and must not be counted twice).
    on_commit: list[Callable[[], None]] = field(default_factory=list)


class EventMessages:
    """The messages events send, to the customer's recipients of the moment."""

    def __init__(
        self,
        notices: Notices,
        mirror: Mirror,
        *,
        recipients_cache_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notices = notices
        self._mirror = mirror
        self._recipients_ttl = recipients_cache_seconds
        self._monotonic = monotonic
        # (workspace, customer) -> (when looked up, recipients): one lookup per burst.
        self._recipients: dict[tuple[str, str], tuple[float, list[notifier_pb2.Recipient]]] = {}

    async def freshness(self, burst: Burst, workspace_id: str) -> Freshness:
        """The workspace's mirror freshness, read once per batch."""
        found = burst.freshness.get(workspace_id)
        if found is None:
            found = await self._mirror.freshness(burst.connection, workspace_id)
            burst.freshness[workspace_id] = found
        return found

    async def recipients_of(
        self, burst: Burst, workspace_id: str, customer_id: str
    ) -> list[notifier_pb2.Recipient]:
        """The customer's recipients, looked up once per burst (``recipients_cache_seconds``)
        and the customer's email read from the mirror while it is fresh."""
        key = (workspace_id, customer_id)
        now = self._monotonic()
        cached = self._recipients.get(key)
        if cached is not None and now - cached[0] < self._recipients_ttl:
            return cached[1]

        async def mirrored_email() -> str | None:
            return await mirror_reads.customer_email(
                burst.connection,
                workspace_id,
                customer_id,
                await self.freshness(burst, workspace_id),
                burst.now,
            )

        found = await self._notices.recipients(workspace_id, customer_id, mirrored_email)
        if self._recipients_ttl > 0:
            if len(self._recipients) >= _RECIPIENTS_CACHE_MAX:
                self._recipients.clear()
            self._recipients[key] = (now, found)
        return found

    async def notify(
        self,
        burst: Burst,
        event: inbox_store.StoredEvent,
        customer_id: str,
        template: notifier_pb2.Template.ValueType,
        variables: dict[str, str],
        *,
        dedup: str,
        problems: list[str],
        recipients: list[notifier_pb2.Recipient] | None = None,
    ) -> None:
        """One message per recipient: ``recipients``, else the customer's linked contacts
        (see ``Notices``); what the notifier refuses for good is added to ``problems`` (the
        event's outcome) instead of retried forever."""
        if recipients is None:
            recipients = await self.recipients_of(burst, event.workspace_id, customer_id)
        refused = await self._notices.send(
            event.workspace_id,
            customer_id,
            template,
            variables,
            dedup=dedup,
            log_fields={"event_id": event.event_id, "event_type": event.event_type},
            recipients=recipients,
        )
        problems.extend(refused)
