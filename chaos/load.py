"""Steady load: chat turns from demo customers (status, a confirmed refund, two confirmed plan
changes each) and Stripe activity that makes webhooks (new customers, failed payments)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe

from chaos.stack import (
    BILLING_DEADLINE_SECONDS,
    CANCELLATION_GRACE_SECONDS,
    RPC_DEADLINE_SECONDS,
    ChaosStack,
)

# The client waits far longer than any deadline of the edge, so that a hang shows as a long
# duration rather than as the client's own timeout.
CLIENT_TIMEOUT_SECONDS = 60.0
# The longest sequence of calls one turn makes under its deadlines: identity, billing (read),
# policy, billing (mutation), policy (commit), notifier (hand-off).
TURN_DEADLINE_SECONDS = 4 * RPC_DEADLINE_SECONDS + 2 * BILLING_DEADLINE_SECONDS
HANG_MARGIN_SECONDS = 3.0

# What each chaos customer says, in one conversation: (step, text).
SCRIPT = (
    ("status", "What's my subscription status?"),
    ("refund?", "please refund my last charge"),
    ("refund!", "yes"),
    ("upgrade?", "switch me to the business plan"),
    ("upgrade!", "yes"),
    ("downgrade?", "switch me to the growth plan"),
    ("downgrade!", "yes"),
    ("status", "what plan am I on?"),
)
DEMO_USERS = ("alice", "bob", "carol", "erin", "dev")
# Every other chaos customer cancels after the script and says "undo" this many graces
# later (by customer): some before the scheduler runs the cancellation, some right at the
# end of the grace (the race), some after it.
UNDO_AFTER_GRACES = (0.2, 0.9, 1.0, 1.1, 2.0)


@dataclass
class Turn:
    """One chat request as the client saw it."""

    user: str
    step: str
    seconds: float
    status: int | None
    error: str = ""
    reply: str = ""
    escalated: bool = False
    # The intent the edge read in the message ("" without an answer).
    intent: str = ""
    # When it started (time.monotonic()), to line turns up with the timeline.
    began: float = 0.0

    @property
    def outcome(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        if self.status != 200:
            return f"HTTP {self.status}"
        if "refunded $" in self.reply:
            return "refunded"
        if "Done: you're now on the" in self.reply:
            return "plan changed"
        if "will be canceled" in self.reply:
            return "cancellation scheduled"
        if "cancellation is undone" in self.reply:
            return "cancellation undone"
        if "Too late to undo" in self.reply:
            return "too late to undo"
        if self.escalated:
            return "handed off"
        return "answered"


@dataclass
class ChaosCustomer:
    """A Stripe customer made for the run: Growth (USD), paid first invoice."""

    user_id: str
    email: str
    customer_id: str
    subscription_id: str


@dataclass
class Load:
    """The load generators and what they saw."""

    stack: ChaosStack
    http: aiohttp.ClientSession
    stripe_client: stripe.StripeClient
    growth_price: str
    turns: list[Turn] = field(default_factory=list)
    customers: list[ChaosCustomer] = field(default_factory=list)
    stripe_pokes: dict[str, int] = field(default_factory=dict)
    # What each canceling customer was told last when they said "undo", by subscription:
    # "undone" or "too late" (nothing when the answer said neither).
    told_undo: dict[str, str] = field(default_factory=dict)
    _races: list[asyncio.Task[None]] = field(default_factory=list)
    _queue: asyncio.Queue[ChaosCustomer] = field(default_factory=asyncio.Queue)

    def user_hash(self, user_id: str) -> str:
        return hmac.new(self.stack.demo.hmac_secret, user_id.encode(), hashlib.sha256).hexdigest()

    async def turn(self, user: str, email: str, step: str, text: str, conversation: str) -> Turn:
        body = {
            "workspace_id": self.stack.workspace_id,
            "conversation_id": conversation,
            "visitor": {"user_id": user, "email": email, "user_hash": self.user_hash(user)},
            "text": text,
        }
        began = time.monotonic()
        try:
            async with self.http.post(
                f"{self.stack.url('edge')}/v1/chat/turns",
                json=body,
                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS),
            ) as response:
                status = response.status
                answer: dict[str, Any] = (
                    await response.json() if status == 200 else {"reply": await response.text()}
                )
            turn = Turn(
                user,
                step,
                time.monotonic() - began,
                status,
                reply=str(answer.get("reply", ""))[:300],
                escalated=bool(answer.get("escalated")),
                intent=str(answer.get("intent", "")),
                began=began,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            turn = Turn(
                user, step, time.monotonic() - began, None, error=type(error).__name__, began=began
            )
        self.turns.append(turn)
        return turn

    # customers

    async def make_customer(self, index: int) -> ChaosCustomer | None:
        """A new customer with a card and a Growth subscription (its first invoice paid: one
        refundable charge). Retried with Stripe idempotency keys; None if Stripe kept failing."""
        user_id = f"chaos{index:04d}"
        email = f"{user_id}@example.com"
        for attempt in range(8):
            try:
                return await self._create(user_id, email)
            except stripe.StripeError:
                await asyncio.sleep(0.3 * (attempt + 1))
        return None

    async def _create(self, user_id: str, email: str) -> ChaosCustomer:
        v1 = self.stripe_client.v1
        customer = await v1.customers.create_async(
            {
                "email": email,
                "name": f"Chaos {user_id}",
                "payment_method": "pm_card_visa",
                # The workspace binds a visitor to the customer whose metadata carries the
                # visitor's signed user id (the email in chat is not signed).
                "metadata": {self.stack.demo.customer_metadata_key: user_id},
            },
            {"idempotency_key": f"chaos-customer-{email}"},
        )
        methods = await v1.payment_methods.list_async({"customer": customer.id})
        await v1.customers.update_async(
            customer.id, {"invoice_settings": {"default_payment_method": methods.data[0].id}}
        )
        subscription = await v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": self.growth_price}]},
            {"idempotency_key": f"chaos-subscription-{email}"},
        )
        return ChaosCustomer(user_id, email, customer.id, subscription.id)

    async def prepare(self, count: int) -> None:
        """Makes ``count`` customers (eight at a time) for the chat workers to take."""
        for start in range(0, count, 8):
            made = await asyncio.gather(
                *(self.make_customer(i) for i in range(start, min(start + 8, count)))
            )
            for customer in made:
                if customer is not None:
                    self.customers.append(customer)
                    self._queue.put_nowait(customer)

    # workers

    async def chat_worker(self, stop: asyncio.Event, pause: float) -> None:
        """Runs the script for one customer after another; status turns of the demo
        customers once every chaos customer had its turn."""
        demo = itertools.cycle(DEMO_USERS)
        while not stop.is_set():
            try:
                customer = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                user = next(demo)
                email = f"{user}@example.in" if user == "dev" else f"{user}@example.com"
                await self.turn(user, email, "status", "What's my plan?", f"{user}-status")
                await _sleep_unless(stop, pause)
                continue
            for step, text in SCRIPT:
                await self.turn(
                    customer.user_id, customer.email, step, text, f"{customer.user_id}-c"
                )
                await asyncio.sleep(pause)
            index = int(customer.user_id.removeprefix("chaos"))
            if index % 2 == 0:
                after = UNDO_AFTER_GRACES[(index // 2) % len(UNDO_AFTER_GRACES)]
                race = self.cancel_then_undo(customer, after * CANCELLATION_GRACE_SECONDS)
                self._races.append(asyncio.create_task(race))

    async def cancel_then_undo(self, customer: ChaosCustomer, after: float) -> None:
        """Cancels (confirmed), then says "undo" ``after`` seconds later, racing the
        scheduler that runs the cancellation at the end of the grace."""
        conversation = f"{customer.user_id}-x"
        user, email = customer.user_id, customer.email
        await self.turn(user, email, "cancel?", "cancel my subscription", conversation)
        scheduled = await self.turn(user, email, "cancel!", "yes", conversation)
        if "will be canceled" not in scheduled.reply:
            return
        await asyncio.sleep(after)
        undo = await self.turn(user, email, "undo", "undo", conversation)
        if "cancellation is undone" in undo.reply:
            self.told_undo[customer.subscription_id] = "undone"
        elif "Too late to undo" in undo.reply or "already canceled" in undo.reply:
            self.told_undo[customer.subscription_id] = "too late"

    async def finish_races(self, limit_seconds: float) -> None:
        """Waits for the cancellations in progress (their undo comes after the grace)."""
        if self._races:
            await asyncio.wait(self._races, timeout=limit_seconds)

    async def demo_worker(self, stop: asyncio.Event, pause: float) -> None:
        """The seeded customers: bob's duplicate charge refunded on yes, then status turns of
        every demo customer."""
        await self.turn("bob", "bob@example.com", "duplicate?", "Why was I charged twice?", "bob-d")
        await self.turn("bob", "bob@example.com", "duplicate!", "yes", "bob-d")
        for user in itertools.cycle(DEMO_USERS):
            if stop.is_set():
                return
            email = f"{user}@example.in" if user == "dev" else f"{user}@example.com"
            await self.turn(user, email, "status", "What's my subscription status?", f"{user}-s")
            await _sleep_unless(stop, pause)

    async def stripe_worker(self, stop: asyncio.Event, pause: float) -> None:
        """Stripe activity that only webhooks tell the system about: carol's card declines
        on each payment attempt (invoice.payment_failed: a recovery case, a message), and
        customers' details change (customer.updated)."""
        carol = await self._carol_open_invoice()
        for tick in itertools.count():
            if stop.is_set():
                return
            kind = "carol payment attempt" if tick % 2 == 0 else "customer update"
            try:
                if kind == "carol payment attempt" and carol:
                    with contextlib.suppress(stripe.CardError):
                        await self.stripe_client.v1.invoices.pay_async(carol)
                elif self.customers:
                    customer = self.customers[tick % len(self.customers)]
                    await self.stripe_client.v1.customers.update_async(
                        customer.customer_id, {"metadata": {"chaos_tick": str(tick)}}
                    )
                self.stripe_pokes[kind] = self.stripe_pokes.get(kind, 0) + 1
            except stripe.StripeError:
                self.stripe_pokes[f"{kind} refused"] = (
                    self.stripe_pokes.get(f"{kind} refused", 0) + 1
                )
            await _sleep_unless(stop, pause)

    async def _carol_open_invoice(self) -> str:
        for _ in range(10):
            with contextlib.suppress(stripe.StripeError):
                found = await self.stripe_client.v1.customers.search_async(
                    {"query": "email:'carol@example.com'"}
                )
                invoices = await self.stripe_client.v1.invoices.list_async(
                    {"customer": found.data[0].id, "status": "open"}
                )
                return str(invoices.data[0].id) if invoices.data else ""
            await asyncio.sleep(0.5)
        return ""


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
