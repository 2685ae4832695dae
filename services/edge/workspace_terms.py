"""The workspace's visitor-facing terms, as policy holds them, cached briefly per workspace.

Policy owns a workspace's time zone (its counter periods start at midnight there) and the
prices a customer may switch to by themselves; the edge speaks and offers by the same terms,
read with one GetWorkspaceTerms call. An entry is served for ``ttl_seconds`` (a change of
bounds reaches the replies within that bound; policy itself checks every action at once).

When policy does not answer, the turn goes on with the last terms read for the workspace,
else the fallback (WORKSPACE_TIMEZONE, the default offer), and nothing new is stored, so the
next turn asks again: offers and wording are not rules, and policy, which does decide,
refuses what its own list does not allow.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc

from askvault.policy.v1 import policy_pb2 as ppb
from edge.peers import Peers, error_reason

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefundCap:
    """An automatic refund cap per period, in minor units of a lower-case currency."""

    amount_minor: int
    currency: str


@dataclass(frozen=True)
class WorkspaceTerms:
    """What a visitor may be told about the workspace's bounds."""

    # The IANA zone replies speak of dates in (and counter periods start in).
    time_zone: str
    # The prices offered for a self-serve switch; empty for the default offer.
    self_serve_price_ids: tuple[str, ...] = ()
    refund_caps: tuple[RefundCap, ...] = ()
    refund_window: timedelta | None = None
    cancellation_grace: timedelta | None = None
    # False when these are the fallback (policy did not answer).
    from_policy: bool = True


def _zone_or(zone: str, fallback: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback
    return zone


def from_response(answer: ppb.GetWorkspaceTermsResponse, fallback_zone: str) -> WorkspaceTerms:
    """The terms of a GetWorkspaceTerms answer (a zone this machine does not know, or none,
    is the fallback)."""
    return WorkspaceTerms(
        time_zone=_zone_or(answer.time_zone, fallback_zone) if answer.time_zone else fallback_zone,
        self_serve_price_ids=tuple(answer.self_serve_price_ids),
        refund_caps=tuple(RefundCap(cap.amount_minor, cap.currency) for cap in answer.refund_caps),
        refund_window=(
            answer.refund_window.ToTimedelta() if answer.HasField("refund_window") else None
        ),
        cancellation_grace=(
            answer.cancellation_grace.ToTimedelta()
            if answer.HasField("cancellation_grace")
            else None
        ),
    )


@dataclass(frozen=True)
class _Entry:
    terms: WorkspaceTerms
    loaded_at: float


class TermsCache:
    """At most ``max_entries`` workspaces' terms, least recently used evicted first, each
    served for ``ttl_seconds`` after it was read (0 asks policy on every turn). ``clock`` is
    monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        peers: Peers,
        *,
        fallback_zone: str,
        ttl_seconds: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._peers = peers
        self._fallback = WorkspaceTerms(time_zone=fallback_zone, from_policy=False)
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def get(self, workspace_id: str) -> WorkspaceTerms:
        """The workspace's terms: cached, else read from policy, else the fallback."""
        entry = self._entries.get(workspace_id)
        now = self._clock()
        if entry is not None and now - entry.loaded_at < self._ttl:
            self._entries.move_to_end(workspace_id)
            return entry.terms
        try:
            answer = await self._peers.policy.GetWorkspaceTerms(
                ppb.GetWorkspaceTermsRequest(workspace_id=workspace_id),
                timeout=self._peers.timeout(),
            )
        except grpc.aio.AioRpcError as error:
            logger.warning(
                "workspace terms unavailable; using the fallback",
                extra={"code": error.code().name, "reason": error_reason(error)},
            )
            return entry.terms if entry is not None else self._fallback
        terms = from_response(answer, self._fallback.time_zone)
        if self._ttl > 0:
            self._entries[workspace_id] = _Entry(terms, now)
            self._entries.move_to_end(workspace_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return terms
