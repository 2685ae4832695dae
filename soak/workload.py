"""The soak's fixed mixed load, on chaos's load generators: chat workers that each take a fresh
Stripe customer through every intent at a fixed pace, carol's failed payment and retries,
WhatsApp messages from linked numbers through the WhatsApp emulator and the edge's webhook,
Stripe activity that only webhooks report, and the webhook replayer's second delivery.

Pacing, not a closed loop: each worker starts a turn every ``pace`` seconds (sooner only to
catch up), so the offered load stays the same whether the system answers fast or slow."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.load import ChaosCustomer, Load

# One customer's conversation: every intent of the billing skill, each action confirmed
# (the cancellation undone inside its grace). (step, text).
SCRIPT = (
    ("status", "What's my subscription status?"),
    ("invoices", "show my invoices for the last 3 months"),
    ("refund?", "please refund my last charge"),
    ("refund!", "yes"),
    ("upgrade?", "switch me to the business plan"),
    ("upgrade!", "yes"),
    ("downgrade?", "switch me to the growth plan"),
    ("downgrade!", "yes"),
    ("payment failed", "my payment failed"),
    ("retry", "retry my payment"),
    ("cancel?", "cancel my subscription"),
    ("cancel!", "yes"),
    ("undo", "undo"),
    ("human", "talk to a human"),
)
# Carol's card declines: her failed payment, a retry confirmed (declined again: Stripe sends
# invoice.payment_failed, the recovery message goes out).
CAROL_SCRIPT = (
    ("carol payment failed", "my payment failed"),
    ("carol retry?", "retry my payment"),
    ("carol retry!", "yes"),
)
# Linked WhatsApp numbers of demo customers, and what they write in turn.
WHATSAPP_NUMBERS = {"alice": "+14155550177", "erin": "+14155550178"}
WHATSAPP_TEXTS = ("what's my plan?", "show my invoices", "when is my next invoice?")
PHONE_NUMBER_ID = "1000000001"
LINKED_TEXT = "now linked to your account"
# Fresh customers made ahead of the chat workers.
CUSTOMER_BUFFER = 4


@dataclass(frozen=True)
class Shape:
    """How hard the load is: chat workers and the seconds between their turns, and the
    seconds between carol's scripts, WhatsApp messages and Stripe activity."""

    chat_workers: int = 2
    pace_seconds: float = 0.5
    carol_seconds: float = 20.0
    whatsapp_seconds: float = 2.0
    stripe_seconds: float = 2.0
    replay_seconds: float = 2.0


@dataclass
class WhatsAppPost:
    """One inbound WhatsApp message: the webhook's answer and how long the post took."""

    seconds: float
    status: int | None
    finished: float


@dataclass
class Mix:
    """The soak's workers around chaos's ``Load`` (which keeps every chat turn)."""

    load: Load
    shape: Shape
    customers: asyncio.Queue[ChaosCustomer] = field(
        default_factory=lambda: asyncio.Queue(CUSTOMER_BUFFER)
    )
    whatsapp: list[WhatsAppPost] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)

    def email(self, user: str) -> str:
        return f"{user}@example.in" if user == "dev" else f"{user}@example.com"

    async def feed_customers(self, stop: asyncio.Event) -> None:
        """Makes fresh Stripe customers (a paid Growth subscription each) ahead of the chat
        workers; the queue's bound keeps it a few ahead."""
        for index in itertools.count():
            if stop.is_set():
                return
            customer = await self.load.make_customer(index)
            if customer is not None:
                self.load.customers.append(customer)
                await self.customers.put(customer)

    async def chat_worker(self, stop: asyncio.Event, number: int) -> None:
        """One customer's whole script after another; a script once begun is finished, so
        that no cancellation is left scheduled without its undo."""
        while not stop.is_set():
            customer = await self.customers.get()
            pacer = _Pacer(self.shape.pace_seconds)
            for step, text in SCRIPT:
                await pacer.wait()
                await self.load.turn(
                    customer.user_id, customer.email, step, text, f"{customer.user_id}-{number}"
                )

    async def carol_worker(self, stop: asyncio.Event) -> None:
        """Carol's failed payment and a confirmed retry that declines again."""
        for round_ in itertools.count():
            if stop.is_set():
                return
            pacer = _Pacer(self.shape.pace_seconds)
            for step, text in CAROL_SCRIPT:
                await pacer.wait()
                await self.load.turn("carol", self.email("carol"), step, text, f"carol-{round_}")
            await _sleep_unless(stop, self.shape.carol_seconds)

    async def link_whatsapp(self, http: aiohttp.ClientSession) -> None:
        """Links each demo customer's number as a customer does: the chat shows a one-time
        code, the number's holder sends "LINK <code>" (a signed webhook by the emulator)."""
        for user, number in WHATSAPP_NUMBERS.items():
            asked = await self.load.turn(
                user,
                self.email(user),
                "whatsapp opt-in",
                f"send my billing messages to WhatsApp {number}",
                f"{user}-whatsapp-link",
            )
            code = re.search(r"LINK (\d{8})", asked.reply)
            if code is None:
                raise RuntimeError(f"no link code for {user}: {asked.reply!r}")
            await self._inbound(http, number, user, f"LINK {code.group(1)}")
            await self._until_linked(http, number)
            self.linked.append(number)

    async def _until_linked(self, http: aiohttp.ClientSession, number: str) -> None:
        for _ in range(100):
            messages = await self.whatsapp_messages(http)
            if any(
                m["to"].lstrip("+") == number.lstrip("+") and LINKED_TEXT in str(m)
                for m in messages
            ):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{number} was not linked within 20 s")

    async def whatsapp_messages(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Every message the WhatsApp emulator received from the notifier."""
        async with http.get(f"{self.load.stack.url('whatsapp_emulator')}/_emulator/messages") as r:
            r.raise_for_status()
            found: list[dict[str, Any]] = (await r.json())["messages"]
            return found

    async def _inbound(
        self, http: aiohttp.ClientSession, number: str, name: str, text: str
    ) -> None:
        """A customer's WhatsApp message: the emulator posts the signed webhook to the edge
        and answers with the edge's status."""
        began = time.monotonic()
        status: int | None = None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.post(
                f"{self.load.stack.url('whatsapp_emulator')}/_emulator/inbound",
                json={
                    "phone_number_id": PHONE_NUMBER_ID,
                    "from": number,
                    "text": text,
                    "name": name,
                },
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                status = int((await response.json())["webhook_status"])
        finished = time.monotonic()
        self.whatsapp.append(WhatsAppPost(finished - began, status, finished))

    async def whatsapp_worker(self, stop: asyncio.Event, http: aiohttp.ClientSession) -> None:
        """Messages from the linked numbers in turn (the edge answers each on WhatsApp)."""
        senders = itertools.cycle(self.linked)
        texts = itertools.cycle(WHATSAPP_TEXTS)
        while not stop.is_set():
            await self._inbound(http, next(senders), "Soak", next(texts))
            await _sleep_unless(stop, self.shape.whatsapp_seconds)


class _Pacer:
    """Starts something every ``seconds`` from the first call on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self.next > now:
            await asyncio.sleep(self.next - now)
        self.next = max(self.next, now) + self.seconds


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
