"""The outbox: SMTP retries and dead letters, a late-committed row, hand-offs, attachments."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier import message_store
from notifier.tests.conftest import AGENT_INBOX, WORKSPACE, Notifier
from runtime import testing
from smtp_sink.store import Fault


async def test_smtp_4xx_is_retried_then_sent(notifier: Notifier) -> None:
    notifier.sink.store.queue_fault(Fault(451, "4.3.0 try later", "data", remaining=2))
    sent = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
    assert message.attempts == 3
    assert notifier.sink.store.stats() == {
        "received": 1,
        "distinct_message_ids": 1,
        "duplicates": 0,
    }


async def test_dead_letter_after_n_attempts_keeps_the_last_error(notifier: Notifier) -> None:
    notifier.sink.store.queue_fault(Fault(421, "4.7.0 busy", "rcpt", remaining=100))
    sent = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DEAD)
    assert message.attempts == notifier.settings.max_attempts
    assert "421" in message.last_error
    assert not message.HasField("next_attempt_at")
    assert notifier.sink.store.stats()["received"] == 0


async def test_a_refused_mailbox_is_dead_at_once(notifier: Notifier) -> None:
    notifier.sink.store.queue_fault(Fault(550, "5.1.1 no such user", "rcpt"))
    sent = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE)
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DEAD)
    assert message.attempts == 1
    assert "550" in message.last_error


async def test_a_row_committed_late_by_a_long_transaction_still_goes_out(
    notifier: Notifier, database_url: str
) -> None:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "notifier"})
    try:
        transaction = connection.transaction()
        await transaction.start()
        late = await message_store.insert_message(
            connection,
            message_store.NewMessage(
                workspace_id=WORKSPACE,
                message_id="msg_late",
                contact_id="ct_1",
                recipient_email="late@example.com",
                recipient_whatsapp="",
                recipient_name="Late",
                template="cancellation_undone",
                variables={},
                attachments=(),
                channel="email",
                webhook_url="",
                dedup_key="late",
            ),
        )
        # Messages queued (and sent) after it, while its transaction is still open.
        for index in range(3):
            sent = await notifier.send(
                template=pb.TEMPLATE_CANCELLATION_UNDONE, dedup_key=f"after-{index}"
            )
            await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
        assert notifier.sink.store.select(to="late@example.com") == []
        await transaction.commit()
    finally:
        await connection.close()
    message = await notifier.wait_status(late.message_id, pb.MESSAGE_STATUS_SENT)
    assert message.message_id == "msg_late"
    assert len(notifier.sink.store.select(to="late@example.com")) == 1


@pytest.fixture
async def helpdesk() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A helpdesk webhook receiver: its URL, the bodies it got, and answers to give first."""
    received: list[dict[str, Any]] = []
    answers: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        body["_idempotency_key"] = request.headers.get("Idempotency-Key", "")
        received.append(body)
        return web.Response(status=answers.pop(0) if answers else 202)

    async def invoice(request: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4 invoice " + request.match_info["n"].encode())

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/invoices/{n}.pdf", invoice)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received, answers
    finally:
        await runner.cleanup()


async def test_handoff_reaches_the_agent_inbox_and_the_helpdesk(
    notifier: Notifier, helpdesk: tuple[str, list[dict[str, Any]], list[int]]
) -> None:
    base_url, received, answers = helpdesk
    await notifier.stub.UpdateWorkspaceSettings(
        pb.UpdateWorkspaceSettingsRequest(
            settings=pb.WorkspaceSettings(
                workspace_id=WORKSPACE, helpdesk_webhook_url=f"{base_url}/hook"
            ),
            idempotency_key="helpdesk",
        ),
        metadata=testing.admin_metadata(),
    )
    # The helpdesk fails once: the retry posts again and mails the inbox once.
    answers.append(503)
    sent = await notifier.send(
        template=pb.TEMPLATE_HANDOFF,
        recipient=pb.Recipient(contact_id="ct_1", email="ann@example.com", name="Ann"),
        variables={
            "reason": "refund over the cap",
            "summary": "Wants $900 back; card 4000 0000 0000 0002 mentioned",
            "escalation_id": "esc_1",
        },
    )
    assert sent.message.channel == pb.CHANNEL_HELPDESK_WEBHOOK
    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
    assert message.attempts == 2
    assert len(received) == 2
    body = received[-1]
    assert body["reason"] == "refund over the cap"
    assert body["escalation_id"] == "esc_1"
    assert body["_idempotency_key"] == message.message_id
    assert "0002" not in json.dumps(body)
    [mail] = notifier.sink.store.select(to=AGENT_INBOX)
    assert mail.subject == "Hand-off: refund over the cap"
    assert mail.headers["Reply-To"] == "ann@example.com"
    assert "Wants $900 back" in mail.text and "0002" not in mail.text


async def test_invoice_bundle_attaches_the_fetched_pdfs(
    notifier: Notifier, helpdesk: tuple[str, list[dict[str, Any]], list[int]]
) -> None:
    base_url, _, _ = helpdesk
    sent = await notifier.send(
        template=pb.TEMPLATE_INVOICE_BUNDLE,
        variables={"period": "August to October 2026"},
        attachments=[
            pb.Attachment(
                filename=f"invoice-{n}.pdf",
                content_type="application/pdf",
                url=f"{base_url}/invoices/{n}.pdf",
            )
            for n in (1, 2, 3)
        ],
    )
    await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
    [mail] = notifier.sink.store.select(to="ann@example.com")
    assert [a["filename"] for a in mail.attachments] == [
        "invoice-1.pdf",
        "invoice-2.pdf",
        "invoice-3.pdf",
    ]
    assert all(a["content_type"] == "application/pdf" and a["size"] > 0 for a in mail.attachments)
    missing = await notifier.send(
        template=pb.TEMPLATE_INVOICE_BUNDLE,
        variables={"period": "2025"},
        attachments=[pb.Attachment(filename="x.pdf", url=f"{base_url}/nothing/here.pdf")],
    )
    dead = await notifier.wait_status(missing.message.message_id, pb.MESSAGE_STATUS_DEAD)
    assert "404" in dead.last_error
    await asyncio.sleep(0)
