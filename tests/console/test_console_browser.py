"""The owner's console in headless Chromium against the real services: sign-in through the
OIDC provider, escalations approved (the refund lands in the Stripe emulator) and denied,
bounds proposed by one admin and approved by another (never by the proposer), the audit log
filtered, the recovery chart, and CSRF. Each page's screenshot goes to docs/console/."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from runtime import testing
from smtp_sink.store import Fault
from stripe_emulator import seed
from tests.console.conftest import Console, screenshot, start_console
from tests.e2e.conftest import AGENT_INBOX, WORKSPACE, Stack, eventually


async def _set_cap(stack: Stack, amount_minor: int) -> None:
    """A lower automatic refund cap (a tightening applies at once)."""
    current = await stack.policy.GetBounds(
        policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=5
    )
    bounds = policy_pb2.Bounds()
    bounds.CopyFrom(current.bounds)
    bounds.ClearField("updated_at")
    del bounds.refund_caps[:]
    bounds.refund_caps.append(common_pb2.Money(amount_minor=amount_minor, currency="usd"))
    proposed = await stack.policy.ProposeBoundsChange(
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE, bounds=bounds, idempotency_key=f"cap-{amount_minor}"
        ),
        metadata=testing.admin_metadata("admin-setup"),
        timeout=5,
    )
    assert proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_APPLIED


async def _escalated_refund(stack: Stack, user: str) -> str:
    """A refund request over the cap: policy escalates it; its id."""
    answer = await stack.turn(user, "please refund my last charge", conversation=f"esc-{user}")
    assert answer["escalated"] is True, answer
    return str(answer["escalation_id"])


async def _changes(stack: Stack) -> list[policy_pb2.BoundsChange]:
    listed = await stack.policy.ListBoundsChanges(
        policy_pb2.ListBoundsChangesRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata("admin-check"),
        timeout=5,
    )
    return list(listed.changes)


async def test_sign_in_through_the_provider_shows_the_admin_and_every_page(
    console: Console,
) -> None:
    page = await console.signed_in("admin-a")
    await expect(page.locator("header .who")).to_contain_text("admin-a")
    # The session cookie is HttpOnly and SameSite=Lax.
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "askvault_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    for path, heading in (
        ("/bounds", "Bounds and confirmation"),
        ("/stripe", "Stripe"),
        ("/audit", "Audit log"),
        ("/messages", "Messages"),
    ):
        await page.get_by_role("navigation").get_by_role("link", name=heading).click()
        await page.wait_for_url(f"{console.url}{path}")
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        await screenshot(page, path.strip("/"))
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{console.url}/signed-out")
    await page.goto(f"{console.url}/bounds")
    await page.wait_for_url("**/authorize?**")


async def test_approving_an_escalated_refund_refunds_it_once_in_stripe(console: Console) -> None:
    stack = console.stack
    await _set_cap(stack, 2000)
    escalation_id = await _escalated_refund(stack, "alice")
    page = await console.signed_in("admin-a")
    row = page.locator(f'tr[data-escalation="{escalation_id}"]')
    await expect(row).to_contain_text("open")
    await expect(row).to_contain_text("49.00 USD")
    await screenshot(page, "escalations")
    await row.get_by_role("link", name="Open").click()
    await expect(page.locator("#transcript")).to_contain_text("refund my last charge")
    await expect(page.locator("#subscription")).to_contain_text("Growth")
    await expect(page.locator("#requested")).to_contain_text("refund")
    await screenshot(page, "escalation")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Approved and executed: re_")
    await expect(page.locator("#state")).to_contain_text("executed")
    refunds = await stack.refunds()
    assert len(refunds) == 1, refunds
    assert refunds[0]["amount"] == 4900
    assert refunds[0]["id"] in await page.locator("#stripe-object").inner_text()
    # The open inbox no longer lists it; the executed filter does.
    await page.goto(f"{console.url}/escalations?state=executed")
    await expect(page.locator(f'tr[data-escalation="{escalation_id}"]')).to_be_visible()


async def test_denying_an_escalation_records_the_reason_and_moves_no_money(
    console: Console,
) -> None:
    stack = console.stack
    await _set_cap(stack, 2000)
    escalation_id = await _escalated_refund(stack, "alice")
    page = await console.signed_in("admin-b")
    await page.goto(f"{console.url}/escalations/{escalation_id}")
    await page.locator("#deny-reason").fill("The charge was for a month you used.")
    await page.get_by_role("button", name="Deny").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Denied")
    await expect(page.locator("#state")).to_contain_text("rejected")
    await expect(page.locator("main")).to_contain_text("The charge was for a month you used.")
    assert await stack.refunds() == []
    await page.goto(f"{console.url}/escalations?state=denied")
    await expect(page.locator(f'tr[data-escalation="{escalation_id}"]')).to_be_visible()


async def test_a_loosened_bound_needs_a_second_admin_never_the_proposer(
    console: Console,
) -> None:
    stack = console.stack
    admin_a = await console.signed_in("admin-a")
    await admin_a.goto(f"{console.url}/bounds")
    await admin_a.locator("#cap_amount").fill("5000")
    await admin_a.get_by_role("button", name="Propose").click()
    await expect(admin_a.locator(".flash.ok")).to_contain_text("a second admin must approve")
    [pending] = [c for c in await _changes(stack) if c.state == 1]
    # Only what the admin changed moves: the form keeps every other bound as it is.
    assert list(pending.loosened_fields) == ["refund_caps.usd"]
    row = admin_a.locator(f'#pending tr[data-change="{pending.change_id}"]')
    await expect(row).to_contain_text("admin-a")
    # The proposer's own approval: policy refuses and the page says why.
    await row.get_by_role("button", name="Approve").click()
    await expect(admin_a.locator(".flash.error")).to_contain_text("The policy service refused")
    await screenshot(admin_a, "bounds")
    [still] = [c for c in await _changes(stack) if c.change_id == pending.change_id]
    assert still.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING
    admin_b = await console.signed_in("admin-b")
    await admin_b.goto(f"{console.url}/bounds")
    await (
        admin_b.locator(f'#pending tr[data-change="{pending.change_id}"]')
        .get_by_role("button", name="Approve")
        .click()
    )
    await expect(admin_b.locator(".flash.ok")).to_contain_text("the bounds are in force")
    await expect(admin_b.locator("#caps")).to_contain_text("5,000.00 USD")
    await expect(admin_b.locator("#history")).to_contain_text("admin-b")
    [applied] = [c for c in await _changes(stack) if c.change_id == pending.change_id]
    assert applied.state == policy_pb2.BOUNDS_CHANGE_STATE_APPLIED
    assert (applied.proposed_by, applied.approved_by) == ("admin-a", "admin-b")


async def test_the_audit_log_filters_by_actor_and_shows_the_chain(console: Console) -> None:
    stack = console.stack
    await _set_cap(stack, 2500)
    page = await console.signed_in("admin-a")
    await page.goto(f"{console.url}/audit")
    await expect(page.locator("#chain")).to_contain_text("Chain intact")
    await page.locator('input[name="actor"]').fill("admin-setup")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r".*actor=admin-setup.*"))
    rows = page.locator("#events tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("admin-setup")
    await expect(rows.first).to_contain_text("bounds.applied")
    await screenshot(page, "audit")
    await page.locator('input[name="actor"]').fill("nobody-acted")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#events")).to_contain_text("No event matches.")


async def _recover_a_failed_payment(stack: Stack) -> None:
    """Carol's card declines on "retry now" (a recovery case opens), she updates her card
    on the portal page and retries: the case is recovered within 48 hours."""
    retried = await stack.turn("carol", "retry now", conversation="rec")
    if "Shall I go ahead?" in retried["reply"]:
        retried = await stack.turn("carol", "yes", conversation="rec")
    assert "declined again" in retried["reply"], retried
    await stack.flush_webhooks()
    link = await stack.turn("carol", "update my card", conversation="rec")
    url = next(action["url"] for action in link["actions"] if action["type"] == "link")
    async with stack.http.get(url) as portal:
        html = await portal.text()
    found = re.search(r'<form method="post" action="([^"]+)"', html)
    assert found is not None, html
    target = found.group(1).replace("&amp;", "&")
    target = stack.stripe_url + target if target.startswith("/") else target
    async with stack.http.post(
        target, data={"payment_method": "pm_card_visa"}, allow_redirects=False
    ) as response:
        assert response.status < 400
    again = await stack.turn("carol", "retry now", conversation="rec")
    if "Shall I go ahead?" in again["reply"]:
        again = await stack.turn("carol", "yes", conversation="rec")
    await stack.flush_webhooks()

    async def recovered() -> Any:
        from askvault.billing.v1 import billing_pb2

        stats = await stack.billing.GetRecoveryStats(
            billing_pb2.GetRecoveryStatsRequest(workspace_id=WORKSPACE),
            metadata=testing.admin_metadata("admin-check"),
            timeout=5,
        )
        return stats.recovered_within_48h

    await eventually(recovered)


async def test_the_recovery_chart_draws_the_weeks_beside_the_dunning_band(
    console: Console,
) -> None:
    await _recover_a_failed_payment(console.stack)
    page = await console.signed_in("admin-a")
    await page.goto(f"{console.url}/recovery")
    chart = page.locator("svg.chart")
    await expect(chart).to_be_visible()
    await expect(chart.locator("rect.bar")).to_have_count(12)
    await expect(chart.locator("rect.band")).to_have_count(1)
    # This week's bar: one failed payment, recovered within 48 hours.
    heights = [
        float(await bar.get_attribute("height") or 0)
        for bar in await chart.locator("rect.bar").all()
    ]
    assert heights[-1] > 0 and heights[:-1] == [0.0] * 11, heights
    await expect(page.locator("#recovery-totals")).to_contain_text("1 failed, 1 recovered")
    await screenshot(page, "recovery")


async def test_a_post_without_the_csrf_token_is_refused_and_moves_nothing(
    console: Console,
) -> None:
    stack = console.stack
    before = await _changes(stack)
    page: Page = await console.signed_in("admin-a")
    form: dict[str, str | float | bool] = {
        "cap_amount": "9000",
        "cap_currency": "usd",
        "refund_window_days": "30",
        "plan_changes_per_period": "3",
        "resubscriptions_per_period": "1",
        "cancellation_grace_minutes": "60",
        "counter_period": "calendar_month",
    }
    # The signed-in browser's own cookie, but no token (a cross-site form would send that).
    refused = await page.request.post(f"{console.url}/bounds/propose", form=form)
    assert refused.status == 403
    assert "CSRF" in await refused.text()
    wrong = await page.request.post(
        f"{console.url}/bounds/propose", form={**form, "csrf_token": "not-the-token"}
    )
    assert wrong.status == 403
    signed_out = await page.request.post(f"{console.url}/signout", form={})
    assert signed_out.status == 403
    assert await _changes(stack) == before
    # Still signed in: the refused sign-out changed nothing either.
    await page.goto(f"{console.url}/bounds")
    await expect(page.locator("header .who")).to_contain_text("admin-a")


async def test_a_callback_with_a_forged_state_signs_no_one_in(console: Console) -> None:
    context = await console.browser.new_context()
    page = await context.new_page()
    await page.goto(f"{console.url}/signin")
    await page.wait_for_url("**/authorize?**")
    # Back at the console with a code and a state it never issued (a login CSRF attempt).
    answer = await page.goto(f"{console.url}/auth/callback?code=forged&state=forged")
    assert answer is not None and answer.status == 400
    await expect(page.locator(".flash.error")).to_contain_text("Sign-in failed")
    await page.goto(f"{console.url}/escalations")
    await page.wait_for_url("**/authorize?**")


async def test_a_dead_letter_is_resent_from_the_messages_page(console: Console) -> None:
    stack = console.stack
    await _set_cap(stack, 2000)
    escalation_id = await _escalated_refund(stack, "alice")

    async def handoff_mail() -> list[dict[str, Any]]:
        return [m for m in await stack.emails(AGENT_INBOX) if escalation_id in str(m)]

    await eventually(handoff_mail)
    # The customer's mailbox refuses the next message: the decline's notice dies at once.
    stack.sink.store.queue_fault(Fault(550, "5.1.1 no such user", "rcpt"))
    page = await console.signed_in("admin-a")
    await page.goto(f"{console.url}/escalations/{escalation_id}")
    await page.locator("#deny-reason").fill("Refunds over the cap need a receipt.")
    await page.get_by_role("button", name="Deny").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Denied")
    await page.goto(f"{console.url}/messages?status=dead")
    dead = page.locator("#messages tbody tr", has_text="escalation declined")
    await expect(dead).to_have_count(1, timeout=15_000)
    await expect(dead).to_contain_text("550")
    await screenshot(page, "messages")
    await dead.get_by_role("button", name="Resend").click()
    await expect(page.locator(".flash.ok")).to_contain_text("queued again")

    async def customer_mail() -> list[dict[str, Any]]:
        return [
            m
            for m in await stack.emails("alice@example.com")
            if "receipt" in str(m) or escalation_id in str(m)
        ]

    await eventually(customer_mail, timeout=15.0)


async def test_the_outcomes_page_charts_the_edges_figures(console: Console) -> None:
    stack = console.stack
    await stack.turn("alice", "what is my plan?", conversation="status")
    await _set_cap(stack, 2000)
    await _escalated_refund(stack, "alice")
    page = await console.signed_in("admin-a")
    await page.goto(f"{console.url}/outcomes")
    await expect(page.locator("#outcome-totals")).to_be_visible()
    await expect(page.locator("svg.chart")).to_have_count(3)
    await expect(page.locator("#intents")).to_contain_text("refund")
    await screenshot(page, "outcomes")


async def test_connecting_again_rotates_the_signing_secret_and_the_old_one_retires(
    console: Console,
) -> None:
    page = await console.signed_in("admin-a")
    await page.goto(f"{console.url}/stripe")
    webhook = page.locator("#webhook")
    await expect(webhook).to_contain_text("Registered in Stripe")
    await expect(page.locator("#secrets tbody tr")).to_have_count(1)
    await page.locator('input[name="secret_key"]').fill(seed.DEMO_API_KEY)
    await page.get_by_role("button", name="Connect").click()
    await expect(page.locator(".flash.ok")).to_contain_text("Connected (test mode)")
    rows = page.locator("#secrets tbody tr")
    await expect(rows).to_have_count(2)
    # Newest first: the old secret is the second row; it stops verifying at once.
    old = rows.nth(1)
    old_id = (await old.locator("td").first.inner_text()).strip()
    await old.locator('select[name="overlap_seconds"]').select_option("0")
    await old.get_by_role("button", name="Retire").click()
    await expect(page.locator(".flash.ok")).to_contain_text(f"Secret {old_id} retires at once")
    await expect(page.locator("#secrets tbody tr", has_text=old_id)).to_contain_text("retired")
    await expect(page.locator("#secrets tbody tr").first).to_contain_text("verifies")
    await screenshot(page, "stripe")


async def test_a_service_that_is_down_is_named_on_the_page(console: Console) -> None:
    # A console whose billing gateway cannot be reached (policy still answers).
    with testing.refused_port() as port:
        broken = await start_console(
            console.stack, console.provider_url, billing_target=f"127.0.0.1:{port}"
        )
        try:
            page = await console.signed_in("admin-a", broken.url)
            for path in ("/recovery", "/stripe"):
                await page.goto(f"{broken.url}{path}")
                await expect(page.get_by_role("alert")).to_contain_text(
                    "The billing gateway service is unavailable"
                )
                assert "Traceback" not in await page.content()
            await page.goto(f"{broken.url}/bounds")
            await expect(page.locator("#bounds-in-force")).to_be_visible()
            await expect(page.get_by_role("alert")).to_have_count(0)
        finally:
            await broken.stop(1.0)
