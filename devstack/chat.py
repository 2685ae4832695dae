"""``make chat`` and ``make demo``: talk to a running ``make run`` as a demo customer.

``python -m devstack.chat [--user bob]`` opens a terminal chat; ``--demo`` plays the seed's
journey (a duplicate charge refunded, then an upgrade from Starter to Growth) and prints the
transcript. The demo first puts bob back in his seed story through the Stripe emulator's
test endpoint (and waits until the stack has seen it), and talks in a new conversation, so it
plays the same way every time on one ``make run`` (until the workspace's per-customer bounds,
e.g. three plan changes a month, say no: those are never reset).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import uuid
from typing import Any

import aiohttp

from devstack import config

DEMO_JOURNEY = (
    "Why was I charged twice?",
    "yes",
    "I want to upgrade from Starter to Growth",
    "yes",
    "What's my subscription status?",
)
DEMO_USER = "bob"
DEMO_EMAIL = "bob@example.com"
# How long the demo waits for the stack to see the reset (webhooks delivered and processed).
RESET_WAIT_SECONDS = 20.0
# What the bot says once the reset is seen: bob on the seed's plan, the duplicate back.
_RESET_SEEN = (
    ("What's my subscription status?", "Starter"),
    ("Why was I charged twice?", "twice on"),
)


class Chat:
    """One conversation with the edge as a verified demo visitor."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        demo: config.DemoConfig,
        user: str,
        edge_url: str | None = None,
    ) -> None:
        visitor = next((v for v in demo.visitors if v["user_id"] == user), None)
        if visitor is None:
            raise SystemExit(f"unknown demo user {user!r}; see config/demo.toml")
        self._http = http
        base = edge_url or f"http://127.0.0.1:{demo.port('edge')}"
        self._url = f"{base}/v1/chat/turns"
        self._body: dict[str, Any] = {
            "workspace_id": demo.workspace_id,
            "conversation_id": f"cli-{uuid.uuid4().hex[:12]}",
            "visitor": {
                "user_id": visitor["user_id"],
                "email": visitor["email"],
                "user_hash": hmac.new(
                    demo.hmac_secret, visitor["user_id"].encode(), hashlib.sha256
                ).hexdigest(),
            },
        }

    async def say(self, text: str) -> str:
        """Sends one message and returns the bot's reply with its buttons."""
        async with self._http.post(self._url, json={**self._body, "text": text}) as response:
            body = await response.json()
        if response.status != 200:
            return f"[{response.status}] {body.get('error', body)}"
        reply = str(body["reply"])
        buttons = [a["label"] for a in body.get("actions", []) if a["type"] != "link"]
        if buttons:
            reply += "\n  [" + "] [".join(buttons) + "]"
        if body.get("escalation_id"):
            reply += f"\n  (escalation {body['escalation_id']})"
        return reply


async def reset_demo_customer(
    http: aiohttp.ClientSession, demo: config.DemoConfig, edge_url: str, stripe_url: str
) -> None:
    """Puts bob back in his seed story in the Stripe emulator, has the emulator deliver the
    events now, and waits until the bot answers from the reset state (the billing gateway's
    mirror follows those events), asking in a conversation of its own."""
    async with http.post(
        f"{stripe_url}/_emulator/stories/reset",
        json={"api_key": demo.raw["stripe"]["secret_key"], "email": DEMO_EMAIL},
    ) as response:
        changed = await response.json()
        if response.status != 200:
            raise RuntimeError(f"the demo customer could not be reset: {changed}")
    if not any(changed.values()):
        return
    async with http.post(f"{stripe_url}/_emulator/webhooks/flush", json={}) as response:
        response.raise_for_status()
    probe = Chat(http, demo, DEMO_USER, edge_url)
    deadline = asyncio.get_running_loop().time() + RESET_WAIT_SECONDS
    for question, seen in _RESET_SEEN:
        while seen not in await probe.say(question):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the stack did not see the demo customer's reset in time")
            await asyncio.sleep(0.5)


async def play_demo(
    http: aiohttp.ClientSession, demo: config.DemoConfig, edge_url: str, stripe_url: str | None
) -> list[str]:
    """Resets the demo customer (when the stack runs the Stripe emulator), then plays the
    journey in a new conversation; the transcript, one line per message."""
    if stripe_url is not None:
        await reset_demo_customer(http, demo, edge_url, stripe_url)
    chat = Chat(http, demo, DEMO_USER, edge_url)
    transcript: list[str] = []
    for line in DEMO_JOURNEY:
        transcript += [f"visitor> {line}", f"bot> {await chat.say(line)}"]
    return transcript


async def run(user: str, demo_mode: bool) -> int:
    demo = config.load()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        try:
            if demo_mode:
                # With real Stripe (STRIPE_TEST_API_KEY) there is no emulator to reset.
                stripe_url = (
                    None
                    if os.environ.get("STRIPE_TEST_API_KEY")
                    else f"http://127.0.0.1:{demo.port('stripe_emulator')}"
                )
                edge_url = f"http://127.0.0.1:{demo.port('edge')}"
                transcript = await play_demo(http, demo, edge_url, stripe_url)
                print(f"Seed journey as {DEMO_EMAIL} in {demo.workspace_id}\n")
                for visitor_line, bot_line in zip(transcript[::2], transcript[1::2], strict=True):
                    print(f"{visitor_line}\n{bot_line}\n")
                return 0
            chat = Chat(http, demo, user)
            print(f"Chatting as {user} in {demo.workspace_id}; Ctrl-D to leave.")
            while True:
                try:
                    line = await asyncio.to_thread(input, "you> ")
                except EOFError:
                    return 0
                if line.strip():
                    print(f"bot> {await chat.say(line)}")
        except aiohttp.ClientConnectionError:
            print(
                "The edge is not answering: start the stack with `make run` first.", file=sys.stderr
            )
            return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", default="alice", help="a demo user id from config/demo.toml")
    parser.add_argument("--demo", action="store_true", help="play the seed's journey")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(run(args.user, args.demo)))


if __name__ == "__main__":
    main()
