"""Fixtures for policy's tests: a running policy server on a fresh database, with a test
clock, a test assertion key and helpers to mint assertions and seed bounds."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import timestamp_pb2

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from policy import chaining
from policy.domain import audit
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import assertions, testing
from runtime.server import RunningService

WORKSPACE = "ws_test"
KEY_ID = "test-key"
# How long a test quote stays confirmable.
QUOTE_TTL = timedelta(minutes=5)
START = datetime(2026, 3, 15, 12, 0, 0, tzinfo=UTC)
_keys = itertools.count()
# The audit MAC keys of test servers (tests of rotation pass their own).
AUDIT_MAC_KEY = base64.b64encode(b"policy-test-audit-mac-key-0123456789abcdef").decode()
AUDIT_MAC_KEYS = f"t1:{AUDIT_MAC_KEY}"


class TestClock:
    """A clock the test moves by hand."""

    __test__ = False

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Moves the clock forward."""
        self.now += delta


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def usd(amount_minor: int) -> common_pb2.Money:
    """An amount in US cents."""
    return common_pb2.Money(amount_minor=amount_minor, currency="usd")


def key(prefix: str = "k") -> str:
    """A fresh idempotency key."""
    return f"{prefix}-{next(_keys)}"


def confirm(
    request: pb.AuthorizeRequest,
    contact_id: str,
    *,
    expires_at: datetime,
    channel: pb.ConfirmationChannel.ValueType = pb.CONFIRMATION_CHANNEL_CHAT_TURN,
    summary: str = "Refund as quoted",
) -> pb.AuthorizeRequest:
    """The request confirmed by the person: confirmed = true with a quote of exactly its
    terms, as the edge would send it after a "yes"."""
    return testing.confirmed(
        request, contact_id=contact_id, expires_at=expires_at, channel=channel, summary=summary
    )


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    """The status code and ErrorInfo reason of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    code, reason, _ = testing.error_details(raised.value)
    return code, reason


async def audit_outcomes(policy: Policy, subject_id: str) -> list[tuple[str, str]]:
    """(kind, outcome) of every audit entry about ``subject_id``, oldest first, once the
    chainer has caught up."""
    await policy.chain()
    connection = await asyncpg.connect(policy.database_url)
    try:
        rows = await connection.fetch(
            "SELECT kind, outcome FROM policy.audit_events"
            " WHERE workspace_id = $1 AND subject_id = $2 ORDER BY sequence",
            policy.workspace_id,
            subject_id,
        )
    finally:
        await connection.close()
    return [(row["kind"], row["outcome"]) for row in rows]


def policy_settings(database_url: str, **values: object) -> PolicySettings:
    """Settings for a test server; the worker sweeps rarely unless a test asks otherwise."""
    defaults: dict[str, object] = {
        "expiry_interval_seconds": 3600.0,
        "audit_mac_keys": AUDIT_MAC_KEYS,
        "audit_checkpoint_interval_seconds": 3600.0,
        # Tests link the chain explicitly (Policy.chain, or the audit RPCs, which chain first).
        "audit_chain_interval_ms": 60_000,
    }
    defaults.update(values)
    return testing.make_settings(PolicySettings, database_url, **defaults)


@dataclass
class Policy:
    """A running policy server and what a test needs around it."""

    stub: policy_pb2_grpc.PolicyServiceAsyncStub
    server: RunningService
    clock: TestClock
    private_key: Ed25519PrivateKey
    database_url: str
    audit_keys: audit.MacKeys
    workspace_id: str = WORKSPACE
    _contacts: itertools.count[int] = field(default_factory=itertools.count)

    def assertion(
        self,
        contact_id: str = "ct_alice",
        customer: str = "cus_alice",
        *,
        workspace_id: str | None = None,
        expires_in: timedelta = timedelta(minutes=5),
        private_key: Ed25519PrivateKey | None = None,
    ) -> str:
        """An identity assertion signed with the test key (or another one, to forge)."""
        now = datetime.now(UTC).replace(microsecond=0)
        return assertions.issue(
            private_key or self.private_key,
            KEY_ID,
            assertions.Assertion(
                assertion_id=f"as_{next(self._contacts)}",
                workspace_id=workspace_id or self.workspace_id,
                contact_id=contact_id,
                user_id=f"user-{contact_id}",
                email=f"{contact_id}@example.com",
                stripe_customer_id=customer,
                issued_at=now - timedelta(minutes=10),
                expires_at=now + expires_in,
            ),
        )

    def refund(
        self,
        amount_minor: int,
        *,
        contact_id: str = "ct_alice",
        customer: str = "cus_alice",
        charge_age: timedelta = timedelta(days=1),
        confirmed: bool = True,
        currency: str = "usd",
        idempotency_key: str | None = None,
        assertion: str | None = None,
    ) -> pb.AuthorizeRequest:
        """An Authorize request for a refund of a charge of ``charge_age``, confirmed by the
        person unless ``confirmed`` is False."""
        request = pb.AuthorizeRequest(
            workspace_id=self.workspace_id,
            identity_assertion=(
                assertion if assertion is not None else self.assertion(contact_id, customer)
            ),
            action=common_pb2.BILLING_ACTION_REFUND,
            details=pb.ActionDetails(
                charge_id="ch_1",
                amount=common_pb2.Money(amount_minor=amount_minor, currency=currency),
                charge_created_at=timestamp(self.clock() - charge_age),
            ),
            context=pb.EscalationContext(conversation_id="conv_1", transcript_summary="wants $"),
            idempotency_key=idempotency_key or key("refund"),
        )
        return self.confirmed(request, contact_id) if confirmed else request

    def confirmed(self, request: pb.AuthorizeRequest, contact_id: str) -> pb.AuthorizeRequest:
        """The request with the person's valid confirmation of exactly its terms."""
        return confirm(request, contact_id, expires_at=self.clock() + QUOTE_TTL)

    def action(
        self,
        action: common_pb2.BillingAction.ValueType,
        details: pb.ActionDetails,
        *,
        contact_id: str = "ct_alice",
        customer: str = "cus_alice",
        confirmed: bool = True,
    ) -> pb.AuthorizeRequest:
        """An Authorize request for any action, confirmed unless ``confirmed`` is False."""
        request = pb.AuthorizeRequest(
            workspace_id=self.workspace_id,
            identity_assertion=self.assertion(contact_id, customer),
            action=action,
            details=details,
            idempotency_key=key("action"),
        )
        return self.confirmed(request, contact_id) if confirmed else request

    def plan_change(
        self, *, contact_id: str = "ct_alice", customer: str = "cus_alice", confirmed: bool = True
    ) -> pb.AuthorizeRequest:
        """An Authorize request for a plan change, confirmed unless ``confirmed`` is False."""
        return self.action(
            common_pb2.BILLING_ACTION_CHANGE_PLAN,
            pb.ActionDetails(subscription_id="sub_1", target_price_id="price_pro"),
            contact_id=contact_id,
            customer=customer,
            confirmed=confirmed,
        )

    async def set_bounds(
        self, admin: str = "admin-alice", **changes: object
    ) -> pb.ProposeBoundsChangeResponse:
        """Proposes the defaults (plan Business) with some fields changed."""
        current = await self.stub.GetBounds(pb.GetBoundsRequest(workspace_id=self.workspace_id))
        bounds = pb.Bounds()
        bounds.CopyFrom(current.defaults)
        bounds.ClearField("updated_at")
        bounds.askvault_plan = pb.ASK_VAULT_PLAN_BUSINESS
        for name, value in changes.items():
            if isinstance(value, list):
                del getattr(bounds, name)[:]
                getattr(bounds, name).extend(value)
            elif isinstance(value, timedelta):
                getattr(bounds, name).FromTimedelta(value)
            else:
                setattr(bounds, name, value)
        response: pb.ProposeBoundsChangeResponse = await self.stub.ProposeBoundsChange(
            pb.ProposeBoundsChangeRequest(
                workspace_id=self.workspace_id, bounds=bounds, idempotency_key=key("bounds")
            ),
            metadata=testing.admin_metadata(admin),
        )
        return response

    async def chain(self) -> None:
        """Links everything recorded so far into the audit chain, as the chainer would (it
        waits for a chainer that holds the head): a test reads the chain after this, never
        after a sleep."""
        connection = await asyncpg.connect(
            self.database_url, server_settings={"search_path": "policy,public"}
        )
        try:
            await chaining.chain_workspace(
                connection, self.audit_keys, self.workspace_id, 1000, wait=True
            )
        finally:
            await connection.close()

    async def counter(self, contact_id: str = "ct_alice", counter: str = "refund_amount") -> int:
        """The sum of a contact's counter rows (every period and currency)."""
        connection = await asyncpg.connect(self.database_url)
        try:
            used = await connection.fetchval(
                "SELECT coalesce(sum(used), 0) FROM policy.counters"
                " WHERE workspace_id = $1 AND contact_id = $2 AND counter = $3",
                self.workspace_id,
                contact_id,
                counter,
            )
        finally:
            await connection.close()
        return int(used)

    async def customer_counter(
        self, customer: str = "cus_alice", counter: str = "refund_amount"
    ) -> int:
        """The sum of a Stripe customer's counter rows (every period and currency)."""
        connection = await asyncpg.connect(self.database_url)
        try:
            used = await connection.fetchval(
                "SELECT coalesce(sum(used), 0) FROM policy.customer_counters"
                " WHERE workspace_id = $1 AND stripe_customer_id = $2 AND counter = $3",
                self.workspace_id,
                customer,
                counter,
            )
        finally:
            await connection.close()
        return int(used)


@pytest.fixture
def private_key() -> Ed25519PrivateKey:
    """The key identity would sign assertions with."""
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def policy(database_url: str, private_key: Ed25519PrivateKey) -> AsyncIterator[Policy]:
    """Policy serving on a free port, with the demo workspace enabled (plan Business)."""
    clock = TestClock(START)
    public: Mapping[str, Ed25519PublicKey] = {KEY_ID: private_key.public_key()}

    async def key_source() -> Mapping[str, Ed25519PublicKey]:
        return public

    # The server runs as production runs it: as a member of policy's service role, migrating
    # (nothing left to apply here) as the owner.
    settings = policy_settings(
        await testing.service_database_url(database_url, "policy"),
        migration_database_url=database_url,
    )
    service = PolicyService(settings, key_source=key_source, clock=clock)
    async with (
        testing.running(service, settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        harness = Policy(
            policy_pb2_grpc.PolicyServiceStub(channel),
            running,
            clock,
            private_key,
            database_url,
            audit.MacKeys.parse(AUDIT_MAC_KEYS),
        )
        await harness.set_bounds()
        yield harness
