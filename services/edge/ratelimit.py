"""Request limits keyed only on proven values: the client's address before the visitor is
verified, the verified contact and its Stripe customer after.

The counters live in the edge's database (table rate_limit_windows), so every replica spends
the same budget: N replicas do not give a visitor N times the limit. A hit is one upsert of
its key's row (a verified turn's contact and customer: two, in one transaction).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from edge.settings import EdgeSettings
from runtime.database import Connection, Queries

queries = Queries("edge")

# Seconds between deletions of ended windows (by each replica, on a hit).
CLEANUP_INTERVAL_SECONDS = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimited(Exception):
    """A verified turn over its contact's or its customer's budget; the HTTP layer answers
    429 RATE_LIMITED and the turn changes nothing more."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many requests for this {scope}")
        # "contact" or "customer": which budget ran out.
        self.scope = scope


class RateLimiter:
    """At most ``limit`` hits per key in each ``window_seconds`` window, shared by every
    replica on the database. A key's window starts at its first hit, so a burst is never
    split in two by a window boundary. ``name`` keeps the keys of two limiters apart."""

    def __init__(
        self, pool: asyncpg.Pool, name: str, limit: int, window_seconds: float = 60.0
    ) -> None:
        self._pool = pool
        self._prefix = f"{name}:"
        self._limit = limit
        self._window = window_seconds
        self._last_cleanup = time.monotonic()

    async def allow(self, key: str, at: datetime | None = None) -> bool:
        """Counts a hit (at ``at``, None: now); False (and not counted) when the key is over
        its limit."""
        async with self._pool.acquire() as connection:
            return await self.hit(connection, key, at)

    async def hit(self, connection: Connection, key: str, at: datetime | None = None) -> bool:
        """``allow`` on the caller's connection (and transaction)."""
        allowed = bool(
            await connection.fetchval(
                queries.hit_rate_limit, self._prefix + key, self._limit, self._window, at
            )
        )
        if time.monotonic() - self._last_cleanup >= CLEANUP_INTERVAL_SECONDS:
            # The table holds one row per key seen within a window or so, not every key
            # ever seen: a flood of addresses costs rows for a minute, not forever.
            self._last_cleanup = time.monotonic()
            await connection.execute(queries.delete_ended_rate_limit_windows, self._window)
        return allowed


def trusted_networks(spec: str) -> tuple[Network, ...]:
    """The networks of a comma-separated CIDR list ("10.0.0.0/8, 192.168.1.7"); ValueError
    on an entry that is not one."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in trusted)


def address_key(address: str) -> str:
    """The budget an address spends: an IPv4 address, or an IPv6 address's /64 (one host
    commonly holds a whole /64 and could rotate through it); anything else as given."""
    parsed = _parse(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The address a request is limited by: the socket peer, unless the peer is a trusted
    proxy; then the right-most X-Forwarded-For hop that is not itself a trusted proxy (hops
    to its left were written by the client and prove nothing). ``forwarded_for`` holds every
    X-Forwarded-For header in order."""
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    # Only proxies in the chain (or no header): the request came from the proxies themselves.
    return hops[0] if hops else peer


class TurnLimits:
    """The limits the engine applies once it knows who is asking: turns per verified contact
    and per Stripe customer (several contacts of one customer share its budget), and agent
    emails for unverified visitors' hand-offs per workspace."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        contact_per_minute: int,
        customer_per_minute: int,
        unverified_handoff_emails_per_hour: int,
    ) -> None:
        self._pool = pool
        self._contacts = RateLimiter(pool, "contact", contact_per_minute)
        self._customers = RateLimiter(pool, "customer", customer_per_minute)
        self.unverified_handoff_emails_per_hour = unverified_handoff_emails_per_hour

    @classmethod
    def from_settings(cls, settings: EdgeSettings, pool: asyncpg.Pool) -> TurnLimits:
        """The limits the settings give."""
        return cls(
            pool,
            settings.visitor_turns_per_minute,
            settings.customer_turns_per_minute,
            settings.unverified_handoff_emails_per_hour,
        )

    async def check(self, workspace_id: str, contact_id: str, customer_id: str) -> None:
        """Counts a verified turn against its contact and its customer; RateLimited (nothing
        counted) when either budget is spent."""
        async with self._pool.acquire() as connection, connection.transaction():
            # Contact, then customer, in every replica: concurrent turns wait, never deadlock.
            # A refusal rolls back what this turn counted.
            if not await self._contacts.hit(connection, f"{workspace_id}/{contact_id}"):
                raise RateLimited("contact")
            if customer_id and not await self._customers.hit(
                connection, f"{workspace_id}/{customer_id}"
            ):
                raise RateLimited("customer")

    async def allow(self, workspace_id: str, contact_id: str, customer_id: str) -> bool:
        """``check`` as a yes or no."""
        try:
            await self.check(workspace_id, contact_id, customer_id)
        except RateLimited:
            return False
        return True
