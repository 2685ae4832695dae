"""What keeps a long-running emulator's answers as fast as its first ones: events listed by
`created` from an index, and full garbage collections that skip what survived the last one."""

from __future__ import annotations

import gc
from typing import Any

from stripe_emulator import events, server
from stripe_emulator.app import RunningEmulator
from stripe_emulator.state import Account, State
from stripe_emulator.tests.conftest import close_http, make_client


def _emit_at(state: State, account: Account, created: int) -> str:
    customer = {"id": state.new_id("cus"), "object": "customer", "created": created}
    return str(events.emit(state, account, "customer.updated", customer, created=created)["id"])


def test_events_created_from_finds_events_stored_after_an_earlier_read_and_past_dated_ones() -> (
    None
):
    state = State()
    account = state.account_for_key("sk_test_index")
    first = _emit_at(state, account, 100)
    second = _emit_at(state, account, 105)
    assert [event["id"] for event in account.events_created_from(101)] == [second]
    # Stored after the read above, and dated before an event stored earlier (a catch-up
    # records what happened at `cancel_at`, after newer events).
    past_dated = _emit_at(state, account, 103)
    latest = _emit_at(state, account, 110)
    assert [event["id"] for event in account.events_created_from(103)] == [
        past_dated,
        second,
        latest,
    ]
    assert [event["id"] for event in account.events_created_from(None)] == [
        first,
        past_dated,
        second,
        latest,
    ]
    assert account.events_created_from(111) == []


async def test_event_list_filters_by_created_with_every_operator(
    emulator: RunningEmulator, api_key: str
) -> None:
    client, http_client = make_client(emulator, api_key)
    try:
        await client.v1.customers.list_async()  # makes the key's account
        account = emulator.state.account_for_key(api_key)
        ids = {created: _emit_at(emulator.state, account, created) for created in (100, 105, 110)}
        # One more at 105, stored last: Stripe lists ties most recent first.
        tie = _emit_at(emulator.state, account, 105)

        async def listed(created: int | dict[str, int]) -> list[str]:
            query: Any = {"created": created, "limit": 100}
            page = await client.v1.events.list_async(params=query)
            return [event.id for event in page.data]

        assert await listed({"gte": 105}) == [ids[110], tie, ids[105]]
        assert await listed({"gt": 105}) == [ids[110]]
        assert await listed({"gt": 100, "lt": 110}) == [tie, ids[105]]
        assert await listed({"lte": 100}) == [ids[100]]
        assert await listed(105) == [tie, ids[105]]
        assert await listed({"gte": 111}) == []
    finally:
        await close_http(http_client)


def test_a_full_collection_freezes_what_survived_it() -> None:
    freeze = server.freeze_survivors_of_full_collections()
    # Only the explicit collections below: an automatic full one while the list is built
    # would freeze before the young collection is checked.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.unfreeze()
        kept = [{"n": n} for n in range(1_000)]
        gc.collect(1)
        assert gc.get_freeze_count() == 0, "only a full collection freezes"
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)
    finally:
        gc.callbacks.remove(freeze)
        gc.unfreeze()
        if was_enabled:
            gc.enable()
