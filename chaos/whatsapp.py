"""WhatsApp load: demo customers link a number (the chat's one-time code, then "LINK <code>"
from the number), then write from it; each inbound message goes to the edge's WhatsApp
webhook signed as WhatsApp signs it (the emulator's signing), and is posted again until the
edge answers 2xx, as WhatsApp retries. The replies go out through the notifier to the
WhatsApp emulator, whose status webhooks (sent, delivered) come back through the edge, and
are posted again by the emulator until the edge takes them (``flush`` when settling)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.load import Load
from whatsapp_emulator import app as whatsapp_app
from whatsapp_emulator import signing

# What devstack's plan gives the edge and the emulator (devstack/planning.py).
APP_SECRET = "local-whatsapp-app-secret"  # noqa: S105 - the local stack's public secret
PHONE_NUMBER_ID = "1000000001"
# Demo customers who link a number, and the numbers.
LINKED = (
    ("alice", "alice@example.com", "+14155550171"),
    ("erin", "erin@example.com", "+14155550175"),
)
QUESTIONS = ("what plan am I on?", "What's my subscription status?")
# Posts of one inbound message before the harness gives up on it (WhatsApp retries for hours).
MAX_POSTS = 40


@dataclass
class Inbound:
    """One inbound message as the harness sent it."""

    wamid: str
    number: str
    kind: str  # "link" or "question"
    accepted: bool = False
    posts: int = 0


@dataclass
class WhatsAppLoad:
    """Links numbers, then writes from them; remembers every inbound message."""

    load: Load
    inbound: list[Inbound] = field(default_factory=list)
    linked: set[str] = field(default_factory=set)

    async def configure(self) -> None:
        """The emulator's status webhooks come ``STATUS_DELAY_SECONDS`` after each send."""
        async with self.load.http.post(
            f"{self.load.stack.url('whatsapp_emulator')}/_emulator/config",
            json={"status_delay_seconds": STATUS_DELAY_SECONDS},
        ) as response:
            response.raise_for_status()

    async def flush(self) -> list[dict[str, Any]]:
        """Has the emulator post every status webhook the edge has not taken yet once more
        now (it retries them on its own, with backoff); the deliveries still pending."""
        async with self.load.http.post(
            f"{self.load.stack.url('whatsapp_emulator')}/_emulator/webhooks/flush",
            json={"timeout": 30},
        ) as response:
            response.raise_for_status()
            pending: list[dict[str, Any]] = (await response.json())["pending"]
            return pending

    async def post(self, payload: dict[str, Any]) -> int | None:
        """Posts one signed webhook to the edge; its HTTP status (None: no answer)."""
        raw = json.dumps(payload).encode()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with self.load.http.post(
                f"{self.load.stack.url('edge')}/api/whatsapp/webhook",
                data=raw,
                headers={
                    "Content-Type": "application/json",
                    signing.HEADER: signing.sign(raw, APP_SECRET),
                },
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                await response.read()
                return response.status
        return None

    async def send(self, number: str, name: str, text: str, kind: str) -> Inbound:
        """One inbound message, posted until the edge takes it (or MAX_POSTS)."""
        payload = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, number, name, text, "")
        message = Inbound(
            str(payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]), number, kind
        )
        self.inbound.append(message)
        while message.posts < MAX_POSTS:
            message.posts += 1
            status = await self.post(payload)
            if status is not None and 200 <= status < 300:
                message.accepted = True
                return message
            await asyncio.sleep(0.5)
        return message

    async def link(self, user: str, email: str, number: str) -> bool:
        """The chat's code, then "LINK <code>" from the number; whether a code was given."""
        for _ in range(10):
            asked = await self.load.turn(
                user,
                email,
                "whatsapp link?",
                f"send my billing messages to WhatsApp {number}",
                f"{user}-wa",
            )
            code = re.search(r"LINK (\d{8})", asked.reply)
            if code is not None:
                sent = await self.send(number, user, f"LINK {code.group(1)}", "link")
                if sent.accepted:
                    self.linked.add(number)
                return sent.accepted
            await asyncio.sleep(1.0)
        return False

    async def worker(self, stop: asyncio.Event, pause: float) -> None:
        """Links the numbers, then asks questions from them until stopped."""
        await self.configure()
        for user, email, number in LINKED:
            await self.link(user, email, number)
        # The link's proof is applied once the edge answered: the first question follows it.
        for tick in itertools.count():
            if stop.is_set():
                return
            user, _, number = LINKED[tick % len(LINKED)]
            if number in self.linked:
                await self.send(number, user, QUESTIONS[tick % len(QUESTIONS)], "question")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)


# Seconds the emulator waits before each status webhook: longer than the notifier takes to
# record a send, so that a status never arrives before the message is marked sent (a status
# that does is issue 19's item 7, apart from this harness).
STATUS_DELAY_SECONDS = 0.5
