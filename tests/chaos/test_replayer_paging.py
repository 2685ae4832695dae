"""The webhook replayer's polling walks Stripe's event list to its end and never drops a
page: a walk cut by a failed page takes nothing (the next walk takes every event), and a page
that cannot be walked on from is kept as a gap for the reconciliation to report."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from chaos.webhooks import PageFailed, Replayer


class ListedReplayer(Replayer):
    """A replayer whose pages come from a list (newest first), failing where told."""

    events: list[str]
    # `created` of each event; by default its number (evt_5 made at 5).
    created: dict[str, int]
    fail_after: set[str]
    empty_after: set[str]

    async def _page(self, starting_after: str, created_from: int | None) -> dict[str, Any]:
        if starting_after in self.fail_after:
            self.fail_after.discard(starting_after)
            raise PageFailed("HTTP 500")
        start = self.events.index(starting_after) + 1 if starting_after else 0
        if starting_after in self.empty_after:
            return self._checked({"data": [], "has_more": True}, starting_after)
        data = [
            {"id": event_id, "created": self.created.get(event_id, int(event_id[4:]))}
            for event_id in self.events[start : start + 2]
        ]
        return {"data": data, "has_more": start + 2 < len(self.events)}


def _replayer(events: list[str], fail_after: set[str], empty_after: set[str]) -> ListedReplayer:
    replayer = ListedReplayer(cast(Any, None), cast(Any, None), "", "")
    replayer.events, replayer.fail_after, replayer.empty_after = events, fail_after, empty_after
    replayer.created = {}
    return replayer


def test_a_walk_cut_by_a_failed_page_loses_no_older_event() -> None:
    replayer = _replayer(["evt_5", "evt_4", "evt_3", "evt_2", "evt_1"], {"evt_4"}, set())

    async def rounds() -> None:
        assert not await replayer.poll_round()  # the second page failed: nothing taken
        assert replayer.seen == set()
        replayer.events.insert(0, "evt_6")  # a newer event meanwhile
        assert await replayer.poll_round()

    asyncio.run(rounds())
    assert replayer.seen == {f"evt_{n}" for n in range(1, 7)}


def test_a_page_with_more_but_no_events_is_a_gap_reported_not_skipped() -> None:
    replayer = _replayer(["evt_4", "evt_3", "evt_2", "evt_1"], set(), {"evt_3"})
    assert not asyncio.run(replayer.poll_round())
    assert replayer.gaps and "has_more" in replayer.gaps[0], replayer.gaps
    assert replayer.seen == set()


def test_an_event_dated_in_the_past_listed_behind_seen_events_is_seen() -> None:
    replayer = _replayer(["evt_5", "evt_4", "evt_3", "evt_2", "evt_1"], set(), set())

    async def rounds() -> None:
        assert await replayer.poll_round()
        # A subscription ended at its cancel_at (time 3), recorded after evt_6 was made:
        # listed behind evt_5, which the last walk saw.
        replayer.events[:0] = ["evt_6"]
        replayer.events.insert(2, "evt_7")
        replayer.created["evt_7"] = 3
        assert await replayer.poll_round()

    asyncio.run(rounds())
    assert replayer.seen == {f"evt_{n}" for n in range(1, 8)}
    assert set(replayer.pending) == replayer.seen  # each one taken once, none twice
