"""A visitor's journey through the edge on the test workspace: their status, then a refund
they confirm, whose confirmation repeated moves no more money."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from conformance.report import expect
from conformance.target import Target


class Conversation:
    """One conversation of the target's visitor."""

    def __init__(self, http: aiohttp.ClientSession, target: Target) -> None:
        self._http = http
        self._url = f"{target.edge_url}/v1/chat/turns"
        self._body = {
            "workspace_id": target.workspace_id,
            "conversation_id": f"conformance-{uuid.uuid4().hex[:12]}",
            "visitor": {
                "user_id": target.visitor.user_id,
                "email": target.visitor.email,
                "user_hash": target.visitor.user_hash,
            },
        }

    async def say(self, text: str) -> dict[str, Any]:
        async with self._http.post(self._url, json={**self._body, "text": text}) as response:
            body: dict[str, Any] = await response.json()
            expect(response.status == 200, f"{text!r} answered {response.status}: {body}")
        return body


async def status(http: aiohttp.ClientSession, target: Target) -> str:
    answer = await Conversation(http, target).say("What's my subscription status?")
    expect(answer["intent"] == "status", f"intent {answer['intent']}: {answer['reply']}")
    expect(not answer["escalated"], f"handed off: {answer['reply']}")
    expect("plan" in answer["reply"], f"no plan in {answer['reply']!r}")
    return str(answer["reply"]).splitlines()[0]


async def refund(http: aiohttp.ClientSession, target: Target) -> str:
    """The refund the visitor asks for is quoted, done on their yes, and a second yes finds
    nothing waiting."""
    if target.stripe_emulator_url:
        await _reset_demo_customer(http, target)
    chat = Conversation(http, target)
    quoted = await chat.say(target.refund_text)
    confirm = [action for action in quoted["actions"] if action["type"] == "confirm"]
    expect(bool(confirm), f"no refund offered: {quoted['reply']!r}")
    done = await chat.say("yes")
    expect("refunded" in done["reply"], f"the yes did not refund: {done['reply']!r}")
    again = await chat.say("yes")
    expect("nothing waiting" in again["reply"], f"a second yes answered {again['reply']!r}")
    return str(done["reply"]).splitlines()[0]


async def _reset_demo_customer(http: aiohttp.ClientSession, target: Target) -> None:
    """On the local stack: the demo customer back in its story (charged twice)."""
    from devstack import chat, config

    await chat.reset_demo_customer(http, config.load(), target.edge_url, target.stripe_emulator_url)
