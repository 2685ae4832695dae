"""In-memory state: one isolated account per secret key, connected accounts under it."""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import random
import secrets
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stripe_emulator import errors

Json = dict[str, Any]

API_VERSION = "2026-10-28.endive"
IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60
_ID_ALPHABET = string.ascii_letters + string.digits
# Seed of the id generator, so that a fresh emulator hands out the same ids for the
# same sequence of calls (the demo seed's ids are stable across runs).
ID_SEED = 4_242

# Object kind by id prefix, used by `expand[]` and by lookups of ids of any kind.
KIND_BY_PREFIX = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "pm": "payment_method",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "ii": "invoiceitem",
    "inpay": "invoice_payment",
    "pi": "payment_intent",
    "ch": "charge",
    "re": "refund",
    "mandate": "mandate",
    "clock": "test_helpers.test_clock",
    "we": "webhook_endpoint",
    "evt": "event",
    "bps": "billing_portal.session",
    "acct": "account",
}

# The label Stripe uses in "No such <label>: 'id'" messages.
LABEL_BY_KIND = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "payment_method": "PaymentMethod",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "invoice_payment": "invoice payment",
    "payment_intent": "payment_intent",
    "charge": "charge",
    "refund": "refund",
    "mandate": "mandate",
    "test_helpers.test_clock": "test clock",
    "webhook_endpoint": "webhook endpoint",
    "event": "event",
    "billing_portal.session": "billing portal session",
}


def kind_of(object_id: str) -> str | None:
    prefix = object_id.split("_", 1)[0]
    return KIND_BY_PREFIX.get(prefix)


@dataclass
class IdempotentResult:
    fingerprint: str
    status: int
    body: Json
    stored_at: float


@dataclass
class Account:
    """One Stripe account: its objects, events and idempotency keys, isolated from others."""

    id: str
    api_key: str | None
    created: int
    parent_id: str | None = None
    email: str | None = None
    # None, "access_revoked" (every call refused) or "charges_disabled" (money movement refused).
    restriction: str | None = None
    objects: dict[str, dict[str, Json]] = field(default_factory=dict)
    deleted_ids: set[str] = field(default_factory=set)
    idempotency: dict[str, IdempotentResult] = field(default_factory=dict)
    # The events by (created, order stored, id), brought up to date when read: events are the
    # most numerous objects of a long-running account, and a list filtered by `created` (a
    # poll of what is new) must not walk all of them. Events are never changed nor deleted, so
    # the ones stored since the last read are the table's tail.
    _events_by_created: list[tuple[int, int, str]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def table(self, kind: str) -> dict[str, Json]:
        return self.objects.setdefault(kind, {})

    def put(self, obj: Json) -> Json:
        self.table(str(obj["object"]))[str(obj["id"])] = obj
        return obj

    def find(self, kind: str, object_id: str) -> Json | None:
        return self.objects.get(kind, {}).get(object_id)

    def get(self, kind: str, object_id: str, param: str = "id") -> Json:
        found = self.find(kind, object_id)
        if found is None:
            raise errors.no_such(LABEL_BY_KIND.get(kind, kind), object_id, param)
        return found

    def all(self, kind: str) -> Iterator[Json]:
        return iter(list(self.objects.get(kind, {}).values()))

    def events_created_from(self, lowest: int | None) -> list[Json]:
        """The events created at ``lowest`` or later (every event when None), oldest first."""
        table = self.table("event")
        indexed = self._events_by_created
        for order, event in enumerate(
            itertools.islice(table.values(), len(indexed), None), start=len(indexed)
        ):
            bisect.insort(indexed, (int(event["created"]), order, str(event["id"])))
        start = 0 if lowest is None else bisect.bisect_left(indexed, (lowest, -1, ""))
        return [table[event_id] for _, _, event_id in indexed[start:]]

    def expire_idempotency(self, now: float) -> None:
        """Forgets keys older than the TTL. Keys are kept in the order they were first used,
        so the stale ones are at the front: it stops at the first fresh key (a walk over
        every key on every request grew with the account)."""
        while self.idempotency:
            key, result = next(iter(self.idempotency.items()))
            if now - result.stored_at <= IDEMPOTENCY_TTL_SECONDS:
                return
            del self.idempotency[key]


EventListener = Callable[[Account, Json], None]


class State:
    """Everything the emulator knows; `reset()` returns it to a fresh start."""

    def __init__(self, public_base_url: str = "http://127.0.0.1:12111") -> None:
        self.public_base_url = public_base_url
        self.event_listeners: list[EventListener] = []
        self.reset()

    def reset(self) -> None:
        self.rng = random.Random(ID_SEED)
        # Per account, the wall clock's next due moment after its last catch-up (None: nothing
        # due). A GET before that moment has nothing to run, so it skips the catch-up, which
        # walks every subscription and invoice; any other request may change what is due
        # and forgets them all (the catch-up on every request grew with the account).
        self.caught_up: dict[str, int | None] = {}
        self.accounts: dict[str, Account] = {}
        self.account_by_key: dict[str, str] = {}
        # Public, unguessable links (hosted invoice pages, portal sessions) -> (account, object).
        self.public_links: dict[str, tuple[str, str]] = {}

    # ids and time

    def new_id(self, prefix: str, length: int = 24) -> str:
        body = "".join(self.rng.choice(_ID_ALPHABET) for _ in range(length))
        return f"{prefix}_{body}"

    @staticmethod
    def new_secret(prefix: str, length: int = 32) -> str:
        return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))

    @staticmethod
    def wall_time() -> int:
        return int(time.time())

    # accounts

    def account_for_key(self, api_key: str) -> Account:
        """Any `sk_test_`/`rk_test_` key is its own account, created empty on first use."""
        account_id = self.account_by_key.get(api_key)
        if account_id is not None:
            return self.accounts[account_id]
        if not (api_key.startswith(("sk_test_", "rk_test_")) and len(api_key) > len("sk_test_")):
            raise errors.authentication_invalid(api_key)
        account = Account(id=self.new_id("acct", 16), api_key=api_key, created=self.wall_time())
        self.accounts[account.id] = account
        self.account_by_key[api_key] = account.id
        return account

    def connected_account(self, platform: Account, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None or account.parent_id != platform.id:
            raise errors.StripeError(
                403,
                "invalid_request_error",
                f"The provided key '{errors.redact_key(platform.api_key or '')}' does not have "
                f"access to account '{account_id}' (or that account does not exist). "
                "Application access may have been revoked.",
                code="account_invalid",
            )
        return account

    def create_connected_account(self, platform: Account, email: str | None) -> Account:
        account = Account(
            id=self.new_id("acct", 16),
            api_key=None,
            created=self.wall_time(),
            parent_id=platform.id,
            email=email,
        )
        self.accounts[account.id] = account
        return account

    def emit(self, account: Account, event: Json) -> None:
        for listener in self.event_listeners:
            listener(account, event)

    # persistence

    def dump(self) -> Json:
        return {
            "rng": _jsonable_rng_state(self.rng.getstate()),
            "public_links": {token: list(link) for token, link in self.public_links.items()},
            "account_by_key": self.account_by_key,
            "accounts": [
                {
                    "id": account.id,
                    "api_key": account.api_key,
                    "created": account.created,
                    "parent_id": account.parent_id,
                    "email": account.email,
                    "restriction": account.restriction,
                    "objects": account.objects,
                    "deleted_ids": sorted(account.deleted_ids),
                }
                for account in self.accounts.values()
            ],
        }

    def load(self, data: Json) -> None:
        self.reset()
        rng_state = data["rng"]
        self.rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
        self.public_links = {
            token: (link[0], link[1]) for token, link in data["public_links"].items()
        }
        self.account_by_key = dict(data["account_by_key"])
        for raw in data["accounts"]:
            account = Account(
                id=raw["id"],
                api_key=raw["api_key"],
                created=raw["created"],
                parent_id=raw["parent_id"],
                email=raw["email"],
                restriction=raw["restriction"],
                objects=copy.deepcopy(raw["objects"]),
                deleted_ids=set(raw["deleted_ids"]),
            )
            self.accounts[account.id] = account

    def save_to(self, path: Path) -> None:
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.dump()))
        temporary.replace(path)

    def load_from(self, path: Path) -> None:
        self.load(json.loads(path.read_text()))


def _jsonable_rng_state(state: tuple[Any, ...]) -> list[Any]:
    return [state[0], list(state[1]), state[2]]
