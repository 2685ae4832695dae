"""The life of a grant: RESERVED -> REDEEMED -> COMMITTED | RELEASED, or RESERVED -> EXPIRED,
and RELEASED -> COMMITTED once, late.

A grant resolves (committed, released or expired) at most once, with one exception: a
RELEASED grant whose action the enforcement point then finds performed after all (its
reconciliation settled the action as not performed, and a Stripe event later showed it done)
is committed late: the money moved, so the reservation counts again. A REDEEMED grant never
expires by itself: its action is in flight and may have happened at Stripe, so its
reservation stays until the enforcement point reconciles it with Commit or Release.
Commit and Release are accepted from RESERVED too (the enforcement point may resolve a grant
it never got to redeem), but never after the grant's expiry.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from policy.domain.model import PRICE_MOVES, Action, Details
from runtime import errors


class State(enum.StrEnum):
    """askvault.policy.v1.GrantState without the prefix, lower case."""

    RESERVED = "reserved"
    REDEEMED = "redeemed"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


RESOLVED = frozenset({State.COMMITTED, State.RELEASED, State.EXPIRED})


@dataclass(frozen=True)
class Grant:
    """A stored grant, as the rules need it."""

    grant_id: str
    workspace_id: str
    contact_id: str
    action: Action
    details: Details
    state: State
    expires_at: datetime
    created_at: datetime
    cancellation_grace: timedelta | None
    redeem_key: str = ""

    def due(self, now: datetime) -> bool:
        """Whether a RESERVED grant's time is up (a redeemed one is never due)."""
        return self.state is State.RESERVED and now >= self.expires_at


def _error(reason: str, message: str) -> errors.ServiceError:
    return errors.ServiceError(errors.Kind.FAILED_PRECONDITION, reason, message)


def _refuse_resolved(grant: Grant) -> None:
    if grant.state is State.EXPIRED:
        raise _error("GRANT_EXPIRED", "the grant expired before it was used")
    if grant.state in RESOLVED:
        raise _error("GRANT_ALREADY_RESOLVED", f"the grant is already {grant.state.value}")


class GrantDue(Exception):
    """A RESERVED grant past its expiry was touched: the caller expires it, then refuses."""


def _whole_seconds(value: datetime | None) -> int | None:
    # Stripe states a charge's creation time in whole seconds.
    return math.floor(value.timestamp()) if value is not None else None


def check_redeem(
    grant: Grant,
    action: Action,
    details: Details,
    now: datetime,
    *,
    refund_window: timedelta | None,
    self_serve: Callable[[str], bool] | None = None,
) -> None:
    """Refuses a redemption unless the grant is RESERVED, unexpired and for exactly these
    parameters. For a refund, ``details`` are what the enforcement point read from Stripe:
    the charge's creation time must be the one the grant was issued for (to the second) and,
    unless ``refund_window`` is None (a human approved the grant), inside the window now. For
    a move to another price, the price must still be self-serve (``self_serve``, None when a
    human approved the grant): a list narrowed since the grant was issued holds at once."""
    _refuse_resolved(grant)
    if grant.state is State.REDEEMED:
        raise _error("GRANT_ALREADY_REDEEMED", "the grant was redeemed by another operation")
    if grant.due(now):
        raise GrantDue(grant.grant_id)
    if action != grant.action or details.binding() != grant.details.binding():
        raise _error("GRANT_INVALID", "the grant is for other parameters")
    if action in PRICE_MOVES:
        if self_serve is not None and not self_serve(details.target_price_id):
            raise _error("PRICE_NOT_SELF_SERVE", "the price is not a self-serve price any more")
        return
    if action is not Action.REFUND:
        return
    read = details.charge_created_at
    if read is None or _whole_seconds(read) != _whole_seconds(grant.details.charge_created_at):
        raise _error(
            "GRANT_DETAILS_MISMATCH",
            "the charge was created at another time than the grant was issued for",
        )
    if refund_window is not None and now - read > refund_window:
        raise _error("REFUND_OUTSIDE_WINDOW", "the charge is older than the refund window")


def check_resolve(grant: Grant, now: datetime) -> None:
    """Refuses a commit or release unless the grant is RESERVED (unexpired) or REDEEMED."""
    _refuse_resolved(grant)
    if grant.due(now):
        raise GrantDue(grant.grant_id)


# States a commit finds with the grant's reservation already given back: committing one is
# late, and counts the reservation again.
LATE_COMMITTABLE = frozenset({State.RELEASED, State.EXPIRED})


def check_commit(grant: Grant, now: datetime) -> bool:
    """Refuses a commit as ``check_resolve`` does, except of a grant whose reservation was
    given back, whose commit is late (True): the enforcement point reports performed an
    action whose grant it had released, or whose redemption policy no longer holds (its
    database restored from a backup taken before the redemption, the grant then expired
    unredeemed). The money moved either way: it is counted. A committed grant is never
    committed again; a RESERVED one past its expiry is expired first (GrantDue)."""
    if grant.state in LATE_COMMITTABLE:
        return True
    check_resolve(grant, now)
    return False


def exceeds(used: Iterable[int], limit: int | None) -> bool:
    """Whether a late commit left a counter past its limit (None: no limit, a human
    approved the grant). A late commit counts what already moved, past the limit or not."""
    return limit is not None and any(value > limit for value in used)
