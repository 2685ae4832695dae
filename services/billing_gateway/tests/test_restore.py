"""A database restored from a backup older than a refund and a plan change: the ledger takes
both back from Stripe (the events the catch-up lists again), once, with their grants, and a
retry of the original write under its key makes nothing again."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.tests.conftest import WORKSPACE, Stack, key, usd
from runtime import testing


async def _forget_since_the_backup(stack: Stack, operation_ids: list[str]) -> None:
    """What a restore from a backup taken before the writes leaves: no operation rows, no
    inbox entries of their events, and a catch-up position from before them."""
    async with stack.running.pool.acquire() as connection:
        await connection.execute(
            "DELETE FROM operations WHERE workspace_id = $1 AND operation_id = ANY($2::text[])",
            WORKSPACE,
            operation_ids,
        )
        await connection.execute("DELETE FROM stripe_events WHERE workspace_id = $1", WORKSPACE)
        await connection.execute(
            "UPDATE mirror_workspaces SET next_catch_up_at = now(),"
            " caught_up_to = extract(epoch FROM now())::bigint - 300"
        )


async def test_writes_after_the_backup_are_taken_back_from_stripe_once(stack: Stack) -> None:
    await stack.flush_webhooks()
    await stack.service.events.drain()
    await stack.service.catch_up.all()
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    bob = await stack.assertion("bob@example.com")
    charge = stack.demo["customers"]["bob@example.com"]["charges"][-1]
    details = policy_pb2.ActionDetails(charge_id=charge, amount=usd(700))
    details.charge_created_at.FromSeconds(int(account.get("charge", charge)["created"]))
    refund_grant = await stack.grant(bob, common_pb2.BILLING_ACTION_REFUND, details)
    refund_request = pb.RefundChargeRequest(
        workspace_id=WORKSPACE,
        identity_assertion=bob,
        grant_id=refund_grant.grant_id,
        charge_id=charge,
        amount=usd(700),
        idempotency_key=key(),
    )
    refunded = await stack.billing.RefundCharge(refund_request)
    alice = await stack.assertion("alice@example.com")
    sub_id = str(stack.demo["customers"]["alice@example.com"]["subscription"])
    business = stack.demo["products"]["business"]["prices"]["usd"]
    plan_grant_id, plan_operation_id = await _change_plan(stack, alice, sub_id, business)
    await stack.flush_webhooks()
    await stack.service.events.drain()
    made = {refunded.operation.operation_id: "refund", plan_operation_id: "plan"}

    await _forget_since_the_backup(stack, list(made))
    assert await stack.service.catch_up.all() == 1
    await stack.service.events.drain()
    await stack.service.ledger.reconcile(0)

    async with stack.running.pool.acquire() as connection:
        rows = {
            row["operation_id"]: row
            for row in await connection.fetch(
                "SELECT * FROM operations WHERE workspace_id = $1 AND operation_id = ANY($2)",
                WORKSPACE,
                list(made),
            )
        }
    assert set(rows) == set(made), "a write made after the backup is missing from the ledger"
    refund_row = rows[refunded.operation.operation_id]
    assert refund_row["state"] == "succeeded"
    assert refund_row["action"] == "refund"
    assert refund_row["grant_id"] == refund_grant.grant_id
    assert refund_row["idempotency_key"] == refund_request.idempotency_key
    refunds = [r for r in account.all("refund") if r["charge"] == charge]
    assert [r["id"] for r in refunds] == [refund_row["stripe_object_id"]]
    plan_row = rows[plan_operation_id]
    assert plan_row["state"] == "succeeded"
    assert plan_row["action"] == "change_plan"
    assert plan_row["grant_id"] == plan_grant_id
    assert plan_row["stripe_object_id"] == sub_id
    # Reconciliation resolved the grants (committed at policy already: nothing to undo).
    assert refund_row["grant_resolution"] and plan_row["grant_resolution"]

    # The caller retries its refund after the restore: refused, not made a second time.
    with pytest.raises(grpc.aio.AioRpcError) as retried:
        await stack.billing.RefundCharge(refund_request)
    assert testing.error_details(retried.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_MISMATCH",
    )
    assert len([r for r in account.all("refund") if r["charge"] == charge]) == 1


async def _change_plan(stack: Stack, assertion: str, sub_id: str, price: str) -> tuple[str, str]:
    """A plan change under a grant of its own: (grant id, operation id)."""
    grant = await stack.grant(
        assertion,
        common_pb2.BILLING_ACTION_CHANGE_PLAN,
        policy_pb2.ActionDetails(subscription_id=sub_id, target_price_id=price),
    )
    changed = await stack.billing.ChangePlan(
        pb.ChangePlanRequest(
            workspace_id=WORKSPACE,
            identity_assertion=assertion,
            grant_id=grant.grant_id,
            subscription_id=sub_id,
            target_price_id=price,
            idempotency_key=key(),
        )
    )
    return grant.grant_id, str(changed.operation.operation_id)


async def _plan_changes_counted(stack: Stack, customer_id: str) -> int:
    """Policy's plan-change counter of the customer (every period)."""
    return int(
        await _policy_value(
            stack,
            "SELECT coalesce(sum(used), 0) FROM policy.customer_counters"
            " WHERE workspace_id = $1 AND stripe_customer_id = $2 AND counter = 'plan_changes'",
            customer_id,
        )
    )


async def _policy_value(stack: Stack, query: str, *args: object) -> Any:
    """One value of policy's schema (read or changed as the database's owner: the gateway's
    own role reaches only its schema)."""
    connection = await asyncpg.connect(stack.database_url)
    try:
        return await connection.fetchval(query, WORKSPACE, *args)
    finally:
        await connection.close()


async def test_plan_change_in_flight_at_the_backup_and_replaced_since_is_not_lost(
    stack: Stack,
) -> None:
    await stack.flush_webhooks()
    await stack.service.events.drain()
    await stack.service.catch_up.all()
    alice = await stack.assertion("alice@example.com")
    customer_id = stack.customer("alice@example.com")
    sub_id = str(stack.demo["customers"]["alice@example.com"]["subscription"])
    products = stack.demo["products"]
    up_grant, up = await _change_plan(stack, alice, sub_id, products["business"]["prices"]["usd"])
    await _change_plan(stack, alice, sub_id, products["growth"]["prices"]["usd"])
    await stack.flush_webhooks()
    await stack.service.events.drain()
    assert await _plan_changes_counted(stack, customer_id) == 2
    # The backup was taken while the upgrade was in flight (its grant redeemed at policy);
    # the downgrade came after it.
    await _forget_since_the_backup(stack, [])
    async with stack.running.pool.acquire() as connection:
        await connection.execute(
            "UPDATE operations SET state = 'in_flight', stripe_object_id = '',"
            " grant_resolution = '', updated_at = now() - interval '1 hour'"
            " WHERE workspace_id = $1 AND operation_id = $2",
            WORKSPACE,
            up,
        )
    await _policy_value(
        stack,
        "UPDATE policy.grants SET state = 'redeemed', stripe_object_id = '',"
        " resolved_at = NULL WHERE workspace_id = $1 AND grant_id = $2",
        up_grant,
    )
    await _policy_value(
        stack,
        "DELETE FROM policy.idempotency_keys WHERE workspace_id = $1 AND idempotency_key = $2",
        f"{up}-commit",
    )
    # Reconciliation first: Stripe's subscription names the downgrade now, not the upgrade,
    # so the upgrade is settled as not performed and its grant released.
    await stack.service.ledger.reconcile(0)
    assert await _plan_changes_counted(stack, customer_id) == 1
    assert await stack.service.catch_up.all() == 1
    await stack.service.events.drain()
    # The event corrected the operation; reconciliation's pass commits its grant, late.
    await stack.service.ledger.reconcile(0)
    async with stack.running.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT state, stripe_object_id, grant_resolution FROM operations"
            " WHERE workspace_id = $1 AND operation_id = $2",
            WORKSPACE,
            up,
        )
    grant_state = await _policy_value(
        stack,
        "SELECT state FROM policy.grants WHERE workspace_id = $1 AND grant_id = $2",
        up_grant,
    )
    late_outcome = await _policy_value(
        stack,
        "SELECT outcome FROM policy.audit_events WHERE workspace_id = $1 AND subject_id = $2"
        " AND kind = 'grant.committed_late' UNION SELECT outcome FROM policy.audit_pending"
        " WHERE workspace_id = $1 AND subject_id = $2 AND kind = 'grant.committed_late'",
        up_grant,
    )
    assert row is not None
    assert (row["state"], row["stripe_object_id"]) == ("succeeded", sub_id)
    assert row["grant_resolution"] == "committed"
    assert grant_state == "committed"
    # Policy counts the upgrade again: both plan changes Stripe made are counted.
    assert await _plan_changes_counted(stack, customer_id) == 2
    assert late_outcome == "COMMITTED_LATE:WITHIN_BOUND (released: NOT_PERFORMED)"
