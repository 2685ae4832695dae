"""Flows that leave the chat: failed payment -> WhatsApp or email -> "retry now" -> recovered;
the WhatsApp webhook (handshake, signatures, button replies as chat turns); Stripe webhooks
-> contact tags, the newest state winning."""

from __future__ import annotations

import re
from typing import Any

from askvault.billing.v1 import billing_pb2
from askvault.identity.v1 import identity_pb2
from runtime import testing
from tests.e2e.conftest import (
    AGENT_INBOX,
    PHONE_NUMBER_ID,
    WHATSAPP_VERIFY_TOKEN,
    WORKSPACE,
    Stack,
    eventually,
    user_hash,
)
from tests.e2e.whatsapp_linking import LINKED_TEXT, link_whatsapp
from whatsapp_emulator import app as whatsapp_app

CAROL_NUMBER = "+14155550123"
ALICE_NUMBER = "+14155550177"


async def _cases(stack: Stack, state: int) -> list[billing_pb2.RecoveryCase]:
    answer = await stack.billing.ListRecoveryCases(
        billing_pb2.ListRecoveryCasesRequest(workspace_id=WORKSPACE, state=state),  # type: ignore[arg-type]
        metadata=testing.admin_metadata("admin-e2e"),
        timeout=5,
    )
    return list(answer.cases)


async def _fail_carols_retry(stack: Stack, conversation: str) -> None:
    """Carol's card declines: "retry now" fails and Stripe reports invoice.payment_failed."""
    retried = await stack.turn("carol", "retry now", conversation=conversation)
    if "Shall I go ahead?" in retried["reply"]:
        retried = await stack.turn("carol", "yes", conversation=conversation)
    assert "declined again" in retried["reply"], retried
    assert any(action["type"] == "link" for action in retried["actions"])
    await stack.flush_webhooks()


async def _update_carols_card(stack: Stack, conversation: str) -> None:
    """Carol follows the card-update link and picks the test Visa on the portal page."""
    link = await stack.turn("carol", "update my card", conversation=conversation)
    url = next(action["url"] for action in link["actions"] if action["type"] == "link")
    async with stack.http.get(url) as page:
        html = await page.text()
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action is not None, html
    target = action.group(1).replace("&amp;", "&")
    if target.startswith("/"):
        target = stack.stripe_url + target
    async with stack.http.post(
        target, data={"payment_method": "pm_card_visa"}, allow_redirects=False
    ) as response:
        assert response.status < 400, await response.text()


async def test_failed_payment_whatsapp_retry_now_recovers(stack: Stack) -> None:
    await link_whatsapp(stack, "carol", CAROL_NUMBER, "rec")
    await _fail_carols_retry(stack, "rec")
    invoice_id = stack.customer("carol@example.com")["invoices"][-1]

    async def failed_notice() -> list[dict[str, Any]]:
        return [
            message
            for message in await stack.whatsapp_messages()
            if invoice_id in str(message) or "payment" in str(message).lower()
        ]

    notices = await eventually(failed_notice)
    assert notices[0]["to"].lstrip("+") == CAROL_NUMBER.lstrip("+"), notices

    async def open_cases() -> list[billing_pb2.RecoveryCase]:
        return await _cases(stack, billing_pb2.RECOVERY_STATE_OPEN)

    # A message about the payment can reach her before the webhook that opens the case is
    # processed (a loaded machine once showed it): wait for the case rather than read once.
    (case,) = await eventually(open_cases)
    assert case.stripe_customer_id == stack.customer("carol@example.com")["customer"]
    await _update_carols_card(stack, "rec")
    # Carol taps "Retry now" in WhatsApp: the emulator posts the signed button reply.
    async with stack.http.post(
        f"{stack.whatsapp.url}/_emulator/inbound",
        json={
            "phone_number_id": PHONE_NUMBER_ID,
            "from": CAROL_NUMBER,
            "button_payload": "RETRY_PAYMENT",
            "text": "Retry now",
            "name": "Carol",
        },
    ) as response:
        posted = await response.json()
    assert posted["webhook_status"] == 200, posted

    # The button only asks: charging the card again needs Carol's own "yes" from her number.
    async def asked() -> list[dict[str, Any]]:
        return [m for m in await stack.whatsapp_messages() if "Shall I go ahead?" in str(m)]

    await eventually(asked)
    unpaid = await stack.stripe.v1.invoices.retrieve_async(case.invoice_id)
    assert unpaid["status"] == "open", unpaid
    yes = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, CAROL_NUMBER, "Carol", "yes", "")
    status, _ = await stack.post_whatsapp(yes)
    assert status == 200

    async def paid_reply() -> list[dict[str, Any]]:
        return [m for m in await stack.whatsapp_messages() if "went through" in str(m)]

    await eventually(paid_reply)
    invoice = await stack.stripe.v1.invoices.retrieve_async(case.invoice_id)
    assert invoice["status"] == "paid"
    await stack.flush_webhooks()

    async def recovered() -> list[billing_pb2.RecoveryCase]:
        return await _cases(stack, billing_pb2.RECOVERY_STATE_RECOVERED)

    (closed,) = await eventually(recovered)
    assert closed.case_id == case.case_id
    assert await _cases(stack, billing_pb2.RECOVERY_STATE_OPEN) == []


async def test_failed_payment_without_whatsapp_consent_is_emailed(stack: Stack) -> None:
    await _fail_carols_retry(stack, "rec-mail")

    async def failed_mail() -> list[dict[str, Any]]:
        return await stack.emails("carol@example.com")

    mails = await eventually(failed_mail)
    assert len(mails) == 1, mails
    text = mails[0]["text"]
    # All three ways out, each one the system keeps: the invoice page (Stripe's), the card
    # link (Stripe's) and support through the chat's hand-off (no reply-to address is set, so
    # the email does not ask for a reply nobody reads).
    invoice = await stack.stripe.v1.invoices.retrieve_async(
        stack.customer("carol@example.com")["invoices"][-1]
    )
    hosted = str(invoice["hosted_invoice_url"])
    assert f"- retry now: pay the invoice with the card on file or another one: {hosted}" in text
    assert f"- update your card: {hosted}" in text, text
    assert '- talk to support: say "talk to a human" in our chat' in text, text
    assert "reply" not in text.lower(), text
    assert await stack.whatsapp_messages() == []


async def test_failed_payment_whatsapp_offers_three_buttons_each_answered(
    stack: Stack,
) -> None:
    await link_whatsapp(stack, "carol", CAROL_NUMBER, "opts")
    await _fail_carols_retry(stack, "opts")

    async def notice() -> list[dict[str, Any]]:
        return [m for m in await stack.whatsapp_messages() if "payment_failed" in str(m)]

    (sent,) = await eventually(notice)
    payloads = [
        parameter["payload"]
        for component in sent["body"]["template"]["components"]
        if component["type"] == "button"
        for parameter in component["parameters"]
    ]
    assert payloads == ["RETRY_PAYMENT", "UPDATE_CARD", "TALK_TO_HUMAN"], sent
    for payload in ("UPDATE_CARD", "TALK_TO_HUMAN"):
        button = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, CAROL_NUMBER, "Carol", "", payload)
        status, _ = await stack.post_whatsapp(button)
        assert status == 200

    async def answers() -> list[str]:
        texts = [
            str(m["text"])
            for m in await stack.whatsapp_messages()
            if m["to"].lstrip("+") == CAROL_NUMBER.lstrip("+") and m["text"]
        ]
        card = [t for t in texts if stack.stripe_url in t or "billing.stripe" in t]
        human = [t for t in texts if "(reference esc" in t or "reference" in t]
        return texts if card and human else []

    await eventually(answers)

    async def handoff() -> list[dict[str, Any]]:
        return [m for m in await stack.emails(AGENT_INBOX) if "talk to a human" in str(m)]

    await eventually(handoff)


async def test_whatsapp_verification_handshake(stack: Stack) -> None:
    url = f"{stack.edge_url}/api/whatsapp/webhook"
    right = {
        "hub.mode": "subscribe",
        "hub.verify_token": WHATSAPP_VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with stack.http.get(url, params=right) as response:
        assert response.status == 200
        assert await response.text() == "1158201444"
    async with stack.http.get(url, params={**right, "hub.verify_token": "wrong"}) as response:
        assert response.status == 403
        assert "1158201444" not in await response.text()


async def test_whatsapp_bad_signature_is_refused_and_changes_nothing(
    stack: Stack, database_url: str
) -> None:
    await link_whatsapp(stack, "alice", ALICE_NUMBER, "wa")
    sent_before = await stack.whatsapp_messages()
    body = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "", "TALK_TO_HUMAN")
    for signature in ("", "sha256=" + "0" * 64, "sha1=abc"):
        status, answer = await stack.post_whatsapp(body, signature=signature)
        assert status == 401, answer
        assert answer["error"]["code"] == "SIGNATURE_INVALID"
    assert await stack.escalations() == []
    assert await stack.whatsapp_messages() == sent_before
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        turns = await connection.fetchval(
            "SELECT count(*) FROM edge.messages WHERE conversation_id LIKE 'wa:%'"
        )
    finally:
        await connection.close()
    assert turns == 0


async def test_whatsapp_button_reply_becomes_a_chat_turn(stack: Stack) -> None:
    await link_whatsapp(stack, "alice", ALICE_NUMBER, "wa")
    status_text = whatsapp_app.inbound_payload(
        PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "what's my subscription status?", ""
    )
    status, _ = await stack.post_whatsapp(status_text)
    assert status == 200
    button = whatsapp_app.inbound_payload(
        PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "", "RETRY_PAYMENT"
    )
    status, _ = await stack.post_whatsapp(button)
    assert status == 200

    async def replies() -> list[str]:
        found = await stack.whatsapp_messages()
        texts = [
            str(m)
            for m in found
            if m["to"].lstrip("+") == ALICE_NUMBER.lstrip("+") and LINKED_TEXT not in str(m)
        ]
        return texts if len(texts) >= 2 else []

    texts = await eventually(replies)
    assert any("Growth plan" in text for text in texts), texts
    assert any("nothing to retry" in text for text in texts), texts


async def _contact(stack: Stack, user: str) -> identity_pb2.Contact:
    answer = await stack.identity.VerifyVisitor(
        identity_pb2.VerifyVisitorRequest(
            workspace_id=WORKSPACE,
            user_id=user,
            email=f"{user}@example.com",
            user_hash=user_hash(user),
        ),
        timeout=5,
    )
    contact: identity_pb2.Contact = answer.contact
    return contact


async def test_subscription_webhooks_update_tags_newest_wins(stack: Stack) -> None:
    await stack.turn("alice", "what plan am I on?", conversation="tags")  # links the contact
    await stack.flush_webhooks()
    subscription_id = stack.customer("alice@example.com")["subscription"]
    subscription = await stack.stripe.v1.subscriptions.retrieve_async(subscription_id)
    item_id = subscription["items"]["data"][0]["id"]
    prices = {tier: p["prices"]["usd"] for tier, p in stack.summary["products"].items()}
    async with stack.http.post(
        f"{stack.stripe_url}/_emulator/webhooks/mode",
        json={"duplicates": True, "out_of_order": True},
    ) as response:
        assert response.status < 300
    for tier in ("business", "starter"):
        await stack.stripe.v1.subscriptions.update_async(
            subscription_id,
            {
                "items": [{"id": item_id, "price": prices[tier]}],
                "proration_behavior": "none",
            },
        )
    await stack.flush_webhooks()

    async def starter_tag() -> identity_pb2.Contact | None:
        contact = await _contact(stack, "alice")
        return contact if contact.tags.plan_tier == identity_pb2.PLAN_TIER_STARTER else None

    contact = await eventually(starter_tag)
    assert contact.tags.customer_status == identity_pb2.CUSTOMER_STATUS_ACTIVE


async def _whatsapp_texts(stack: Stack, number: str, needle: str) -> list[str]:
    return [
        str(m["text"])
        for m in await stack.whatsapp_messages()
        if m["to"].lstrip("+") == number.lstrip("+") and needle in str(m["text"])
    ]


async def test_whatsapp_stop_opts_out_and_start_opts_back_in(stack: Stack) -> None:
    await link_whatsapp(stack, "carol", CAROL_NUMBER, "stop")
    stop = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, CAROL_NUMBER, "Carol", "STOP", "")
    status, _ = await stack.post_whatsapp(stop)
    assert status == 200

    async def stopped() -> list[str]:
        return await _whatsapp_texts(stack, CAROL_NUMBER, "won't get WhatsApp messages")

    await eventually(stopped)
    # Opted out: the failed-payment notice goes by email, nothing more by WhatsApp.
    await _fail_carols_retry(stack, "stop")

    async def failed_mail() -> list[dict[str, Any]]:
        return await stack.emails("carol@example.com")

    mails = await eventually(failed_mail)
    assert "did not go through" in mails[0]["subject"], mails
    assert not [m for m in await stack.whatsapp_messages() if "payment_failed" in str(m)]
    # A chat turn from the number gets no WhatsApp answer while opted out.
    before = len(await stack.whatsapp_messages())
    start = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, CAROL_NUMBER, "Carol", "Start", "")
    status, _ = await stack.post_whatsapp(start)
    assert status == 200

    async def started() -> list[str]:
        return await _whatsapp_texts(stack, CAROL_NUMBER, "will come to this WhatsApp number")

    await eventually(started)
    # Opted back in: chat answers come on WhatsApp again.
    question = whatsapp_app.inbound_payload(
        PHONE_NUMBER_ID, CAROL_NUMBER, "Carol", "what's my subscription status?", ""
    )
    status, _ = await stack.post_whatsapp(question)
    assert status == 200

    async def answered() -> list[str]:
        return await _whatsapp_texts(stack, CAROL_NUMBER, "plan")

    await eventually(answered)
    assert len(await stack.whatsapp_messages()) >= before + 2


async def test_whatsapp_help_hands_off_to_a_person(stack: Stack) -> None:
    await link_whatsapp(stack, "alice", ALICE_NUMBER, "help")
    help_ = whatsapp_app.inbound_payload(PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "HELP", "")
    status, _ = await stack.post_whatsapp(help_)
    assert status == 200

    async def answer() -> list[str]:
        return await _whatsapp_texts(stack, ALICE_NUMBER, "reference")

    (text,) = await eventually(answer)
    escalation_id = text.split("(reference ")[1].split(")")[0]

    async def handoff() -> list[dict[str, Any]]:
        return [m for m in await stack.emails(AGENT_INBOX) if escalation_id in str(m)]

    (mail,) = await eventually(handoff)
    customer = stack.customer("alice@example.com")["customer"]
    assert customer in mail["text"] and "talk to a human" in mail["text"], mail["text"]


async def test_tags_are_filled_when_the_contact_is_linked(stack: Stack) -> None:
    # No subscription event after the link: the first turn links bob and tags him at once.
    await stack.turn("bob", "hi", conversation="tagged")
    contact = await _contact(stack, "bob")
    assert contact.stripe_customer_id == stack.customer("bob@example.com")["customer"]
    assert contact.tags.customer_status == identity_pb2.CUSTOMER_STATUS_ACTIVE, contact
    assert contact.tags.plan_tier == identity_pb2.PLAN_TIER_STARTER, contact


async def test_whatsapp_is_asked_to_redeliver_what_the_notifier_could_not_take(
    stack: Stack,
) -> None:
    # Found by the chaos run: with the notifier down, the edge answered 200 to a question
    # whose reply it could not queue and to statuses it could not apply, and WhatsApp, told
    # they were taken, never sent them again: the reply and the statuses were lost.
    await link_whatsapp(stack, "alice", ALICE_NUMBER, "redeliver")
    await stack.notifier_server.server.stop(0)
    question = whatsapp_app.inbound_payload(
        PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "what plan am I on?", ""
    )
    status, answer = await stack.post_whatsapp(question)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE", answer
    delivered = whatsapp_app.status_payload(PHONE_NUMBER_ID, "wamid.x", ALICE_NUMBER, "delivered")
    status, answer = await stack.post_whatsapp(delivered)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE", answer


async def test_whatsapp_is_asked_to_redeliver_a_question_the_turn_could_not_answer(
    stack: Stack,
) -> None:
    # Found by the long chaos run: with identity down the turn answered 503 inside the edge,
    # and the webhook still answered WhatsApp 200: the question was never answered.
    await link_whatsapp(stack, "alice", ALICE_NUMBER, "redeliver-turn")
    await stack.identity_server.server.stop(0)
    question = whatsapp_app.inbound_payload(
        PHONE_NUMBER_ID, ALICE_NUMBER, "Alice", "what plan am I on?", ""
    )
    status, answer = await stack.post_whatsapp(question)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE", answer
