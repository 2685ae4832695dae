"""Every RPC of every gRPC service, enumerated from the proto descriptors, answers random
and boundary input with a clear status, never INTERNAL or UNKNOWN, and a refused call
changes nothing in any table of any service schema, nor in Stripe.

Random values are mixed with real ones (both tenants' workspace ids, object ids harvested
from every table, assertions of visitors of both tenants, expired and forged ones) so that
requests get past validation into lookups, authorization and the ledgers.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import hypothesis
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from askvault.billing.v1 import billing_pb2
from askvault.identity.v1 import identity_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from runtime import assertions, testing
from tests.security import strategies
from tests.security.conftest import (
    IDENTITY_SIGNING_KEY,
    WORKSPACE_A,
    WORKSPACE_B,
    WORKSPACE_FUZZ,
    System,
    admin,
    bearer,
)

SERVICES: dict[str, Any] = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    "policy": policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    "billing_gateway": billing_pb2.DESCRIPTOR.services_by_name["BillingGatewayService"],
    "notifier": notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"],
}
METHODS = [
    (service, method.name) for service, found in SERVICES.items() for method in found.methods
]

# What a hostile request may be answered with: a clear refusal, or OK when the request
# happens to be valid. Never INTERNAL or UNKNOWN, never UNAVAILABLE (nothing is down here:
# it would mean an error was mistaken for an outage), never a hang.
CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ABORTED,
}
# Seconds a table may keep changing after an accepted call (outbox and webhook workers).
QUIET_SECONDS = 0.3
SETTLE_LIMIT_SECONDS = 5.0

SEEN: Counter[tuple[str, str, str]] = Counter()


@dataclass(repr=False)
class Fuzzing:
    """The pools random requests draw from, and Stripe's state before any fuzzing."""

    pools: strategies.Pools
    credentials: list[tuple[tuple[str, str], ...]]
    refunds: list[dict[str, Any]]
    subscriptions: list[tuple[str, str, str, bool]]

    def __repr__(self) -> str:
        return f"Fuzzing({len(self.pools.ids)} ids)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def forged_admin() -> str:
    """An admin credential signed with a key that is not the admin key."""
    claims = {"sub": "mallory", "role": "admin", "aud": "askvault-admin", "exp": 2**33}
    return jwt.encode(claims, "not-the-admin-key-but-long-enough-0123456789", algorithm="HS256")


def _minted(workspace: str, contact: str, expires_in: timedelta, key: Ed25519PrivateKey) -> str:
    now = datetime.now(UTC)
    return assertions.issue(
        key,
        "a1",
        assertions.Assertion(
            assertion_id="as_fuzz",
            workspace_id=workspace,
            contact_id=contact,
            user_id="alice",
            email="alice@example.com",
            stripe_customer_id="cus_fuzz",
            issued_at=now - timedelta(hours=2),
            expires_at=now + expires_in,
        ),
    )


@pytest.fixture(scope="module")
async def fuzzing(system: System) -> Fuzzing:
    """History in both tenants (a refund, a hand-off), then every id in every table."""
    for workspace in (WORKSPACE_B, WORKSPACE_A):
        status, _ = await system.turn("alice", "refund my last charge", "history", workspace)
        assert status == 200
        status, _ = await system.turn("alice", "yes", "history", workspace)
        assert status == 200
        status, _ = await system.turn("bob", "talk to a human please", "history-2", workspace)
        assert status == 200
    ids: set[str] = set()
    for rows in (await system.rows()).values():
        for row in rows:
            for column, value in row.items():
                if (column.endswith("_id") or column == "id") and isinstance(value, str):
                    ids.add(value)
    for summary in (system.summary_a, system.summary_b):
        for customer in summary["customers"].values():
            ids.update(str(v) for v in customer["charges"] + customer["invoices"] if v)
            ids.update(str(customer[k]) for k in ("customer", "subscription") if customer[k])
        for product in summary["products"].values():
            ids.update(str(price) for price in product["prices"].values())
    genuine = Ed25519PrivateKey.from_private_bytes(base64.b64decode(IDENTITY_SIGNING_KEY))
    stranger = Ed25519PrivateKey.generate()
    contact = next((i for i in ids if i.startswith("ct")), "ct_unknown")
    assertions_pool = [
        await system.assertion("alice", WORKSPACE_A),
        await system.assertion("bob", WORKSPACE_A),
        await system.assertion("alice", WORKSPACE_B),
        _minted(WORKSPACE_A, contact, timedelta(minutes=-5), genuine),
        _minted(WORKSPACE_A, contact, timedelta(minutes=5), stranger),
        jwt.encode({"ws": WORKSPACE_A, "sub": contact}, key="", algorithm="none"),
        "eyJhbGciOiJub25lIn0.e30.",
    ]
    credentials = [
        (),
        bearer(admin("admin-fuzz", [WORKSPACE_FUZZ])),
        bearer(admin("admin-expired", ttl_seconds=-60)),
        bearer(forged_admin()),
        bearer("not-a-jwt"),
        (("authorization", "Basic YWRtaW46YWRtaW4="),),
    ]
    return Fuzzing(
        strategies.Pools(
            workspaces=[WORKSPACE_A, WORKSPACE_B, WORKSPACE_FUZZ, "ws_unknown"],
            ids=sorted(ids),
            assertions=assertions_pool,
            emails=["alice@example.com", "bob@example.com", "ALICE@EXAMPLE.COM"],
        ),
        credentials,
        await system.refunds(),
        await system.subscriptions(),
    )


# Policy keeps refused grant calls in its audit log: appending there is the one trace such a
# refusal may leave.
AUDITED_REFUSALS = {("policy", "Redeem"), ("policy", "Commit"), ("policy", "Release")}
AUDIT_TABLES = {"policy audit entries"}


def _changed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return sorted(table for table in after if before.get(table) != after[table])


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m}" for s, m in METHODS])
@hypothesis.settings(hypothesis.settings.get_profile("security"))
@hypothesis.given(data=st.data())
async def test_every_rpc_answers_hostile_input_clearly_and_refusals_change_nothing(
    system: System, fuzzing: Fuzzing, service: str, method: str, data: st.DataObject
) -> None:
    method_descriptor = SERVICES[service].methods_by_name[method]
    request = data.draw(strategies.message(method_descriptor.input_type, fuzzing.pools))
    metadata = data.draw(st.sampled_from(fuzzing.credentials))
    call = getattr(system.stub(service), method)
    before = await system.snapshot()
    violations: dict[str, str] = {}
    try:
        await call(request, metadata=metadata, timeout=10)
        code, reason, message = grpc.StatusCode.OK, "", ""
    except grpc.aio.AioRpcError as refused:
        code, reason, violations = testing.error_details(refused)
        message = refused.details() or ""
    SEEN[(service, method, code.name)] += 1
    assert code in CLEAR, (code, reason, message, request)
    after = await system.snapshot()
    if code is grpc.StatusCode.OK:
        # An accepted request may change state (it was valid); let the workers finish so
        # that the next example starts from a still system.
        if after != before:
            await system.settled_snapshot(QUIET_SECONDS, SETTLE_LIMIT_SECONDS)
        return
    assert reason, (code, "no ErrorInfo reason", request)
    if code is grpc.StatusCode.INVALID_ARGUMENT and reason == "INVALID_ARGUMENT":
        assert violations, ("INVALID_ARGUMENT without a field violation", request)
    changed = _changed(before, after)
    if (service, method) in AUDITED_REFUSALS:
        changed = [table for table in changed if table not in AUDIT_TABLES]
    assert changed == [], (code, reason, request)


async def test_fuzzing_moved_no_money_and_no_subscription(system: System, fuzzing: Fuzzing) -> None:
    """Runs after the fuzzing (file order): Stripe is as it was before it."""
    assert await system.refunds() == fuzzing.refunds
    assert await system.subscriptions() == fuzzing.subscriptions
    # The fuzzing was not vacuous: it reached lookups and authorization, not only validation.
    codes = {code for (_, _, code) in SEEN}
    assert {"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED"} <= codes or not SEEN, SEEN
