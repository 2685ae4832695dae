"""``make chat`` and ``make demo``: talk to a running ``make run`` as a demo customer.

``python -m devstack.chat [--user bob]`` opens a terminal chat; ``--demo`` plays the seed's
journey (a duplicate charge refunded, then an upgrade from Starter to Growth) and prints the
transcript.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
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


class Chat:
    """One conversation with the edge as a verified demo visitor."""

    def __init__(self, http: aiohttp.ClientSession, demo: config.DemoConfig, user: str) -> None:
        visitor = next((v for v in demo.visitors if v["user_id"] == user), None)
        if visitor is None:
            raise SystemExit(f"unknown demo user {user!r}; see config/demo.toml")
        self._http = http
        self._url = f"http://127.0.0.1:{demo.port('edge')}/v1/chat/turns"
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


async def run(user: str, demo_mode: bool) -> int:
    demo = config.load()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        chat = Chat(http, demo, "bob" if demo_mode else user)
        try:
            if demo_mode:
                print(f"Seed journey as bob@example.com in {demo.workspace_id}\n")
                for line in DEMO_JOURNEY:
                    print(f"visitor> {line}")
                    print(f"bot> {await chat.say(line)}\n")
                return 0
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
