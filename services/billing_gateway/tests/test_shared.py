"""One body, two Stripes: the emulator (a fresh, empty account) and real Stripe test mode
(STRIPE_TEST_API_KEY; skipped otherwise). Each test makes its own catalog, customers and
subscriptions with test cards through the SDK, since real Stripe has no seed."""

from __future__ import annotations

import math

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from billing_gateway.tests.conftest import WORKSPACE, Customer, Stack, key, usd
from runtime import testing


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


async def _linked(stack: Stack, customer: Customer) -> str:
    return await stack.assertion(customer.email, customer_id=customer.customer_id)


async def test_charges_listed_for_the_own_customer_only_in_pages(shared_stack: Stack) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    ann = await backend.customer("ann", prices["starter"])
    ben = await backend.customer("ben", prices["starter"])
    own = {await backend.charge(ann, 700), await backend.charge(ann, 800)}
    await backend.charge(ben, 900)
    assertion = await _linked(stack, ann)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stack.billing.ListCharges(
            pb.ListChargesRequest(
                workspace_id=WORKSPACE, identity_assertion=assertion, page_size=2, page_token=token
            )
        )
        pages += 1
        assert len(page.charges) <= 2
        seen.extend(charge.charge_id for charge in page.charges)
        token = page.next_page_token
        if not token:
            break
    # The subscription's first invoice paid one charge, plus the two one-off charges.
    assert pages == 2 and len(seen) == 3 and len(set(seen)) == 3
    assert own <= set(seen)
    listed = await backend.sdk.v1.charges.list_async({"customer": ben.customer_id})
    assert not {str(c.id) for c in listed.data} & set(seen)


async def test_pause_and_resume_need_a_grant_and_set_pause_collection(
    shared_stack: Stack,
) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    cy = await backend.customer("cy", prices["growth"])
    assertion = await _linked(stack, cy)
    request = pb.PauseSubscriptionRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        grant_id="gr_none",
        subscription_id=cy.subscription_id,
        idempotency_key=key("pause"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.PauseSubscription(request)
    assert testing.error_details(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "GRANT_INVALID",
    )
    sub = await backend.sdk.v1.subscriptions.retrieve_async(cy.subscription_id)
    assert sub.pause_collection is None
    details = policy_pb2.ActionDetails(subscription_id=cy.subscription_id)
    grant = await stack.grant(assertion, common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION, details)
    request.grant_id, request.idempotency_key = grant.grant_id, key("pause")
    paused = await stack.billing.PauseSubscription(request)
    assert paused.operation.state == pb.OPERATION_STATE_SUCCEEDED and paused.subscription.paused
    sub = await backend.sdk.v1.subscriptions.retrieve_async(cy.subscription_id)
    assert sub.pause_collection is not None and sub.pause_collection.behavior == "void"
    # The operation is the customer's: another customer's assertion does not find it.
    other = await _linked(stack, await backend.customer("di", prices["starter"]))
    get = pb.GetOperationRequest(workspace_id=WORKSPACE, operation_id=paused.operation.operation_id)
    get.identity_assertion = other
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await stack.billing.GetOperation(get)
    assert testing.error_details(hidden.value)[:2] == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    get.identity_assertion = assertion
    mine = (await stack.billing.GetOperation(get)).operation
    assert (mine.operation_id, mine.state, mine.grant_id) == (
        paused.operation.operation_id,
        pb.OPERATION_STATE_SUCCEEDED,
        grant.grant_id,
    )
    get.identity_assertion = ""
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.billing.GetOperation(get)
    assert testing.error_details(anonymous.value)[0] == grpc.StatusCode.UNAUTHENTICATED
    admin_view = await stack.billing.GetOperation(get, metadata=testing.admin_metadata())
    assert admin_view.operation.action == common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION
    # Resume: its own grant; pause_collection cleared.
    resume = pb.ResumeSubscriptionRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        grant_id=paused.operation.grant_id,  # the pause grant is spent
        subscription_id=cy.subscription_id,
        idempotency_key=key("resume"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as spent:
        await stack.billing.ResumeSubscription(resume)
    assert testing.error_details(spent.value)[0] == grpc.StatusCode.FAILED_PRECONDITION
    grant = await stack.grant(assertion, common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION, details)
    resume.grant_id, resume.idempotency_key = grant.grant_id, key("resume")
    resumed = await stack.billing.ResumeSubscription(resume)
    assert resumed.operation.state == pb.OPERATION_STATE_SUCCEEDED
    assert not resumed.subscription.paused
    sub = await backend.sdk.v1.subscriptions.retrieve_async(cy.subscription_id)
    assert sub.pause_collection is None


async def test_preview_plan_change_prorates_to_the_second(shared_stack: Stack) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    eve = await backend.customer("eve", prices["starter"])
    assertion = await _linked(stack, eve)
    preview = await stack.billing.PreviewPlanChange(
        pb.PreviewPlanChangeRequest(
            workspace_id=WORKSPACE, identity_assertion=assertion, target_price_id=prices["growth"]
        )
    )
    assert preview.subscription_id == eve.subscription_id and preview.plan_change_in_place
    assert preview.current_plan.tier == "starter" and preview.target_plan.tier == "growth"
    assert preview.price_difference == usd(4900 - 1900)
    assert list(preview.features_gained) == ["5 workspaces", "Priority support"]
    assert list(preview.features_lost) == ["1 workspace"]
    sub = await backend.sdk.v1.subscriptions.retrieve_async(eve.subscription_id)
    item = sub["items"].data[0]
    start, end = int(item.current_period_start), int(item.current_period_end)
    # The gateway prorates at its effective time: credit the old price, charge the new one.
    at = preview.effective_at.seconds
    left = (end - at) / (end - start)
    expected = _round_half_away(4900 * left) - _round_half_away(1900 * left)
    assert preview.proration_amount.currency == "usd"
    if backend.live:
        # Stripe's own rounding of the two lines may differ from ours by a cent.
        assert abs(preview.proration_amount.amount_minor - expected) <= 1
    else:
        assert preview.proration_amount.amount_minor == expected
    assert 0 < expected <= 3000


async def test_find_customers_ignores_case(shared_stack: Stack) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    fay = await backend.customer("fay", prices["starter"])
    found = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, email=f"  {fay.email.upper()} ")
    )
    assert [c.stripe_customer_id for c in found.customers] == [fay.customer_id]
    none = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, email="nobody-" + fay.email)
    )
    assert list(none.customers) == []


async def test_find_customers_by_metadata_by_id_and_refusals(shared_stack: Stack) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    hal = await backend.customer("hal", prices["starter"])
    found = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(
            workspace_id=WORKSPACE,
            metadata=pb.MetadataQuery(key="askvault_test", value=backend.run_id),
        )
    )
    assert hal.customer_id in {c.stripe_customer_id for c in found.customers}
    assert {c.metadata_value for c in found.customers} == {backend.run_id}
    by_id = await stack.billing.FindCustomers(
        pb.FindCustomersRequest(workspace_id=WORKSPACE, stripe_customer_id=hal.customer_id)
    )
    assert [(c.stripe_customer_id, c.email) for c in by_id.customers] == [
        (hal.customer_id, hal.email)
    ]
    for bad in (
        pb.FindCustomersRequest(workspace_id=WORKSPACE),
        pb.FindCustomersRequest(
            workspace_id=WORKSPACE,
            email=hal.email,
            metadata=pb.MetadataQuery(key="askvault_test", value="x"),
        ),
        pb.FindCustomersRequest(
            workspace_id=WORKSPACE, metadata=pb.MetadataQuery(key="a']:'x' OR email", value="x")
        ),
        pb.FindCustomersRequest(
            workspace_id=WORKSPACE,
            metadata=pb.MetadataQuery(key="askvault_test", value="x' OR email:'y"),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.billing.FindCustomers(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_refund_with_a_grant_once(shared_stack: Stack) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    gus = await backend.customer("gus", prices["starter"])
    charge_id = await backend.charge(gus, 1500)
    assertion = await _linked(stack, gus)
    charge = await backend.sdk.v1.charges.retrieve_async(charge_id)
    details = policy_pb2.ActionDetails(charge_id=charge_id, amount=usd(600))
    details.charge_created_at.FromSeconds(int(charge.created))
    grant = await stack.grant(assertion, common_pb2.BILLING_ACTION_REFUND, details)
    request = pb.RefundChargeRequest(
        workspace_id=WORKSPACE,
        identity_assertion=assertion,
        grant_id=grant.grant_id,
        charge_id=charge_id,
        amount=usd(600),
        reason=pb.REFUND_REASON_REQUESTED_BY_CUSTOMER,
        idempotency_key=key("refund"),
    )
    first = await stack.billing.RefundCharge(request)
    assert first == await stack.billing.RefundCharge(request)
    refunds = await backend.sdk.v1.refunds.list_async({"charge": charge_id})
    assert [int(r.amount) for r in refunds.data] == [600]
    assert first.operation.state == pb.OPERATION_STATE_SUCCEEDED


async def test_a_card_subscription_is_not_resubscribed_it_changes_in_place(
    shared_stack: Stack,
) -> None:
    stack, backend = shared_stack, shared_stack.backend
    prices = await backend.catalog()
    eve = await backend.customer("eve", prices["starter"])
    assertion = await _linked(stack, eve)
    details = policy_pb2.ActionDetails(
        subscription_id=eve.subscription_id, target_price_id=prices["growth"]
    )
    grant = await stack.grant(assertion, common_pb2.BILLING_ACTION_START_RESUBSCRIPTION, details)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.billing.StartResubscription(
            pb.StartResubscriptionRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                grant_id=grant.grant_id,
                subscription_id=eve.subscription_id,
                target_price_id=prices["growth"],
                idempotency_key=key("resubscribe"),
            )
        )
    assert testing.error_details(refused.value)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PLAN_CHANGE_IN_PLACE",
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad_url:
        await stack.billing.StartResubscription(
            pb.StartResubscriptionRequest(
                workspace_id=WORKSPACE,
                identity_assertion=assertion,
                grant_id=grant.grant_id,
                subscription_id=eve.subscription_id,
                target_price_id=prices["growth"],
                success_url="javascript:alert(1)",
                idempotency_key=key("resubscribe"),
            )
        )
    assert bad_url.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    sub = await backend.sdk.v1.subscriptions.retrieve_async(eve.subscription_id)
    assert not sub.cancel_at_period_end
