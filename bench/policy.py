"""Policy: Authorize(refund)+Commit pairs per second with 64 callers for 64 visitors of one
workspace, beside the same-run bare pipeline of two calls to a bare grpc.aio server each
doing one asyncpg conditional counter UPDATE (the machine's ceiling for "two gRPC hops, one
reservation and its commit"), on the same database with the same pool size; then the latency
at half the measured peak. Client and server share one process, the baseline's too (so the
RSS is of both). Changed from the defaults: the workspace is on the Business plan with a
refund cap no run reaches (proposed and approved by two admins)."""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf import timestamp_pb2

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from askvault.policy.v1 import policy_pb2_grpc
from bench import _harness
from bench._harness import Figure, Goal, Run
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import assertions, testing

CONCURRENCY = 64
SECONDS = 6.0
# Visitors the callers act for; each caller cycles through them, so counter rows contend
# about as much as 64 busy visitors would.
VISITORS = 64
POOL_SIZE = 10
WORKSPACE = "ws_bench"
KEY_ID = "bench"
_BASELINE_METHOD = "/bench.Baseline/Reserve"
_BASELINE_UPDATE = (
    "UPDATE bench_counters SET used = used + 1 WHERE key = $1 AND used + 1 <= cap RETURNING used"
)


async def _baseline(database_url: str) -> _harness.Stats:
    """A bare grpc.aio server whose one method runs one conditional UPDATE."""
    setup = await asyncpg.connect(database_url)
    try:
        await setup.execute(
            "CREATE TABLE bench_counters (key integer PRIMARY KEY, used bigint NOT NULL,"
            " cap bigint NOT NULL)"
        )
        await setup.execute(
            "INSERT INTO bench_counters SELECT g, 0, 1000000000000 FROM generate_series(0, $1) g",
            VISITORS - 1,
        )
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    assert pool is not None

    async def reserve(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        used = await pool.fetchval(_BASELINE_UPDATE, int.from_bytes(request, "big"))
        return int(used or 0).to_bytes(8, "big")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Baseline", {"Reserve": grpc.unary_unary_rpc_method_handler(reserve)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    visitors = itertools.cycle(range(VISITORS))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                _BASELINE_METHOD
            )

            async def one() -> object:
                # Two calls, as Authorize then Commit: each one conditional UPDATE.
                visitor = next(visitors).to_bytes(4, "big")
                await call(visitor)
                return await call(visitor)

            for _ in range(50):  # warm, as ours is
                await one()
            return await _harness.closed_loop(one, CONCURRENCY, SECONDS)
    finally:
        await server.stop(None)
        await pool.close()


def _assertion(private_key: Ed25519PrivateKey, contact_id: str) -> str:
    now = datetime.now(UTC)
    return assertions.issue(
        private_key,
        KEY_ID,
        assertions.Assertion(
            assertion_id=f"as_{contact_id}",
            workspace_id=WORKSPACE,
            contact_id=contact_id,
            user_id=contact_id,
            email=f"{contact_id}@example.com",
            stripe_customer_id=f"cus_{contact_id}",
            issued_at=now,
            expires_at=now + timedelta(hours=1),
        ),
    )


async def _raise_cap(stub: policy_pb2_grpc.PolicyServiceAsyncStub) -> None:
    """Business plan and a cap no run reaches: two admins, as the rule wants."""
    defaults = (await stub.GetBounds(pb.GetBoundsRequest(workspace_id=WORKSPACE))).defaults
    bounds = pb.Bounds()
    bounds.CopyFrom(defaults)
    bounds.askvault_plan = pb.ASK_VAULT_PLAN_BUSINESS
    del bounds.refund_caps[:]
    bounds.refund_caps.append(common_pb2.Money(amount_minor=10**15, currency="usd"))
    proposed = await stub.ProposeBoundsChange(
        pb.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key="bench-bounds"
        ),
        metadata=testing.admin_metadata("admin-alice"),
    )
    await stub.ApproveBoundsChange(
        pb.ApproveBoundsChangeRequest(
            workspace_id=WORKSPACE,
            change_id=proposed.change.change_id,
            idempotency_key="bench-approve",
        ),
        metadata=testing.admin_metadata("admin-bob"),
    )


async def _policy(database_url: str) -> tuple[_harness.Stats, _harness.Stats, float]:
    """(closed loop at saturation, fixed rate at half of it, the rate used)."""
    private_key = Ed25519PrivateKey.generate()
    public: Mapping[str, Ed25519PublicKey] = {KEY_ID: private_key.public_key()}

    async def key_source() -> Mapping[str, Ed25519PublicKey]:
        return public

    settings = testing.make_settings(
        PolicySettings,
        database_url,
        database_pool_min_size=POOL_SIZE,
        database_pool_max_size=POOL_SIZE,
        audit_mac_keys=f"m1:{base64.b64encode(os.urandom(32)).decode()}",
    )
    async with (
        testing.running(PolicyService(settings, key_source=key_source), settings) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        await _raise_cap(stub)
        tokens = [_assertion(private_key, f"ct_{n}") for n in range(VISITORS)]
        charged = timestamp_pb2.Timestamp()
        charged.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        visitors = itertools.cycle(range(VISITORS))
        keys = itertools.count()

        async def pair() -> object:
            visitor = next(visitors)
            number = next(keys)
            request = pb.AuthorizeRequest(
                workspace_id=WORKSPACE,
                identity_assertion=tokens[visitor],
                action=common_pb2.BILLING_ACTION_REFUND,
                details=pb.ActionDetails(
                    charge_id=f"ch_{number}",
                    amount=common_pb2.Money(amount_minor=1, currency="usd"),
                    charge_created_at=charged,
                ),
                idempotency_key=f"a-{number}",
            )
            decision = await stub.Authorize(testing.confirmed(request, contact_id=f"ct_{visitor}"))
            if decision.decision != pb.DECISION_ALLOW:
                raise RuntimeError(f"unexpected decision {decision.decision}")
            return await stub.Commit(
                pb.CommitRequest(
                    workspace_id=WORKSPACE,
                    grant_id=decision.grant.grant_id,
                    stripe_object_id=f"re_{number}",
                    idempotency_key=f"c-{number}",
                )
            )

        for _ in range(50):  # warm: channel, pool, statement caches
            await pair()
        saturated = await _harness.closed_loop(pair, CONCURRENCY, SECONDS)
        rate = _harness.half_rate(saturated)
        steady = await _harness.fixed_rate(pair, rate, _harness.seconds_for_samples(rate))
    return saturated, steady, rate


async def run() -> Run:
    async with _harness.fresh_database() as database_url:
        baseline = await _baseline(database_url)
        ours, steady, rate = await _policy(database_url)
        rss = _harness.rss_mb()
    figures = [
        Figure(
            "pairs_per_second",
            f"Authorize+Commit pairs/s, {CONCURRENCY} callers (bare: 2 calls x 1 UPDATE)",
            round(ours.per_second, 1),
            "/s",
            baseline=round(baseline.per_second, 1),
            goal=Goal(">= 0.5x baseline", at_least=0.5, on_ratio=True),
        ),
        Figure("pairs_failed", "pairs failed at peak", ours.failed, "", goal=Goal("0", at_most=0)),
        Figure("pairs_success", "pairs succeeded at peak, share", round(ours.success_share, 4)),
        _harness.tail_figure("peak_tail", "pair latency at peak", ours, baseline=baseline),
        Figure("half_rate", "half the measured peak (fixed rate)", rate, "/s"),
        _harness.tail_figure("half_tail", "pair latency at half the peak", steady),
        Figure("half_failed", "pairs failed at half the peak", steady.failed, ""),
        Figure("rss", "RSS of client + policy (one process)", rss, "MB"),
    ]
    details = {
        "peak": ours.as_dict(),
        "half_rate": {"rate": rate, **steady.as_dict()},
        "baseline_two_calls_one_update_each": baseline.as_dict(),
        "rss_mb_client_and_server": rss,
    }
    return Run(figures, details)
