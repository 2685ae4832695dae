"""Request limits kept in memory, keyed only on proven values: the client's address before
the visitor is verified, the verified contact and its Stripe customer after.

Each replica limits on its own; with N replicas a visitor gets at most N times the limit,
which is the bound wanted here: protection from floods, not billing-grade accounting.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence

from edge.settings import EdgeSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimited(Exception):
    """A verified turn over its contact's or its customer's budget; the HTTP layer answers
    429 RATE_LIMITED and the turn changes nothing more."""

    def __init__(self, scope: str) -> None:
        super().__init__(f"too many requests for this {scope}")
        # "contact" or "customer": which budget ran out.
        self.scope = scope


class RateLimiter:
    """At most ``limit`` hits per key in each ``window_seconds`` window. A key's window starts
    at its first hit, so a burst is never split in two by a window boundary."""

    def __init__(self, limit: int, window_seconds: float = 60.0, max_keys: int = 100_000) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        # key -> (start of its window, hits in it).
        self._counts: dict[str, tuple[float, int]] = {}

    def _count(self, key: str, now: float) -> int:
        started, count = self._counts.get(key, (now, 0))
        return 0 if now - started >= self._window else count

    def would_allow(self, key: str, now: float | None = None) -> bool:
        """Whether a hit would be allowed now, without counting it."""
        return self._count(key, time.monotonic() if now is None else now) < self._limit

    def allow(self, key: str, now: float | None = None) -> bool:
        """Counts a hit; False (and not counted) when the key is over its limit."""
        moment = time.monotonic() if now is None else now
        count = self._count(key, moment)
        if count >= self._limit:
            return False
        if len(self._counts) >= self._max_keys and key not in self._counts:
            # Forget ended windows first so memory stays bounded under a key flood; if every
            # window is live, the oldest tenth goes (their holders get a fresh budget).
            self._counts = {k: v for k, v in self._counts.items() if moment - v[0] < self._window}
            if len(self._counts) >= self._max_keys:
                for stale in list(self._counts)[: max(1, self._max_keys // 10)]:
                    del self._counts[stale]
        started = self._counts[key][0] if count else moment
        self._counts[key] = (started, count + 1)
        return True


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
        contact_per_minute: int,
        customer_per_minute: int,
        unverified_handoff_emails_per_hour: int,
    ) -> None:
        self._contacts = RateLimiter(contact_per_minute)
        self._customers = RateLimiter(customer_per_minute)
        self.unverified_handoff_emails_per_hour = unverified_handoff_emails_per_hour

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> TurnLimits:
        """The limits the settings give."""
        return cls(
            settings.visitor_turns_per_minute,
            settings.customer_turns_per_minute,
            settings.unverified_handoff_emails_per_hour,
        )

    def check(self, workspace_id: str, contact_id: str, customer_id: str) -> None:
        """Counts a verified turn against its contact and its customer; RateLimited (nothing
        counted) when either budget is spent."""
        contact = f"{workspace_id}/{contact_id}"
        customer = f"{workspace_id}/{customer_id}"
        if not self._contacts.would_allow(contact):
            raise RateLimited("contact")
        if customer_id and not self._customers.would_allow(customer):
            raise RateLimited("customer")
        self._contacts.allow(contact)
        if customer_id:
            self._customers.allow(customer)

    def allow(self, workspace_id: str, contact_id: str, customer_id: str) -> bool:
        """``check`` as a yes or no."""
        try:
            self.check(workspace_id, contact_id, customer_id)
        except RateLimited:
            return False
        return True
