"""Issue 17: the messages that close an escalation (approved and carried out, could no
longer apply, declined) by email and WhatsApp, and an admin's resend of a dead message."""

from __future__ import annotations

import grpc
import pytest

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.tests.conftest import WORKSPACE, Notifier
from runtime import testing
from smtp_sink.store import Fault

ADMIN = testing.admin_metadata("admin-notifier")
NUMBER = "+14155550100"
EXECUTED = {
    "escalation_id": "esc_1",
    "action_summary": "refund $49 of the May 3 charge",
    "amount": "$49",
    "outcome": "executed",
    "reference": "re_123",
}


def _recipient(contact_id: str) -> pb.Recipient:
    return pb.Recipient(contact_id=contact_id, email=f"{contact_id}@example.com", name="Ann")


async def _mail_to(notifier: Notifier, address: str, message_id: str) -> str:
    await notifier.wait_status(message_id, pb.MESSAGE_STATUS_SENT)
    [mail] = notifier.sink.store.select(to=address)
    return f"{mail.subject}\n{mail.text}\n{mail.html}"


async def test_an_executed_escalation_tells_the_customer_the_amount(notifier: Notifier) -> None:
    sent = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_APPROVED,
        variables=EXECUTED,
        recipient=_recipient("ct_ok"),
        dedup_key="escalation:esc_1:outcome",
    )
    assert sent.message.template == pb.TEMPLATE_ESCALATION_APPROVED
    mail = await _mail_to(notifier, "ct_ok@example.com", sent.message.message_id)
    assert "Your request was carried out: refund $49 of the May 3 charge" in mail
    assert "It was approved and carried out: $49." in mail
    assert "esc_1" in mail and "re_123" in mail
    assert "could no longer be done" not in mail


async def test_a_failed_escalation_says_why_nothing_moved(notifier: Notifier) -> None:
    variables = {**EXECUTED, "outcome": "failed", "failure_reason": "ALREADY_REFUNDED"}
    del variables["reference"]
    sent = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_APPROVED,
        variables=variables,
        recipient=_recipient("ct_failed"),
    )
    mail = await _mail_to(notifier, "ct_failed@example.com", sent.message.message_id)
    assert "could not be carried out" in mail
    assert "the charge was already refunded. Nothing was changed." in mail
    assert "approved and carried out" not in mail


async def test_a_declined_escalation_gives_the_reason(notifier: Notifier) -> None:
    sent = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_DECLINED,
        variables={
            "escalation_id": "esc_2",
            "action_summary": "refund $300",
            "amount": "$300",
            "reason": "the annual plan is not refundable after 30 days",
        },
        recipient=_recipient("ct_declined"),
    )
    mail = await _mail_to(notifier, "ct_declined@example.com", sent.message.message_id)
    assert "Your request was declined: refund $300" in mail
    assert "It was declined: the annual plan is not refundable after 30 days" in mail
    assert "Amount asked: $300" in mail


@pytest.mark.parametrize(
    ("template", "variables", "bad"),
    [
        (pb.TEMPLATE_ESCALATION_APPROVED, {"escalation_id": "e", "action_summary": "x"}, "outcome"),
        (
            pb.TEMPLATE_ESCALATION_APPROVED,
            {"escalation_id": "e", "action_summary": "x", "outcome": "maybe"},
            "outcome",
        ),
        (
            pb.TEMPLATE_ESCALATION_APPROVED,
            {"escalation_id": "e", "action_summary": "x", "outcome": "failed"},
            "failure_reason",
        ),
        (pb.TEMPLATE_ESCALATION_DECLINED, {"escalation_id": "e", "action_summary": "x"}, "reason"),
    ],
)
async def test_missing_or_wrong_outcome_variables_are_refused(
    notifier: Notifier, template: int, variables: dict[str, str], bad: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(template=template, variables=variables, recipient=_recipient("ct_x"))
    code, reason, details = testing.error_details(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert f"variables.{bad}" in str(details)


async def test_an_opted_in_contact_gets_the_outcome_on_whatsapp(notifier: Notifier) -> None:
    await notifier.consent("ct_wa_outcome", True, NUMBER)
    sent = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_DECLINED,
        variables={"escalation_id": "e3", "action_summary": "refund $300", "reason": "too old"},
        recipient=pb.Recipient(
            contact_id="ct_wa_outcome", email="wa@example.com", whatsapp_number=NUMBER, name="Wa"
        ),
    )
    assert sent.message.channel == pb.CHANNEL_WHATSAPP
    await notifier.wait_status(
        sent.message.message_id, pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED
    )
    [recorded] = notifier.whatsapp.state.messages
    assert recorded["template"]["name"] == "escalation_declined_v1"
    body = next(c for c in recorded["template"]["components"] if c["type"] == "body")
    assert [p["text"] for p in body["parameters"]] == ["Wa", "refund $300", "too old"]


async def _dead_message(notifier: Notifier, contact_id: str) -> pb.Message:
    notifier.sink.store.queue_fault(Fault(550, "5.1.1 no such user", "rcpt"))
    sent = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_APPROVED,
        variables=EXECUTED,
        recipient=_recipient(contact_id),
        dedup_key=f"escalation:{contact_id}:outcome",
    )
    return await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_DEAD)


async def test_an_admin_resends_a_dead_message_once(notifier: Notifier) -> None:
    dead = await _dead_message(notifier, "ct_dead")
    assert notifier.sink.store.select(to="ct_dead@example.com") == []
    request = pb.ResendMessageRequest(
        workspace_id=WORKSPACE, message_id=dead.message_id, idempotency_key="resend-1"
    )
    resent = await notifier.stub.ResendMessage(request, metadata=ADMIN)
    assert resent.message.message_id == dead.message_id
    assert resent.message.dedup_key == dead.dedup_key
    assert resent.message.status == pb.MESSAGE_STATUS_QUEUED and resent.message.attempts == 0
    # The same key again: the first answer, nothing queued twice.
    again = await notifier.stub.ResendMessage(request, metadata=ADMIN)
    assert again.message == resent.message
    sent = await notifier.wait_status(dead.message_id, pb.MESSAGE_STATUS_SENT)
    assert sent.attempts == 1
    assert len(notifier.sink.store.select(to="ct_dead@example.com")) == 1
    # Still one logical message: Send with its dedup key answers the same message.
    dedup = await notifier.send(
        template=pb.TEMPLATE_ESCALATION_APPROVED,
        variables=EXECUTED,
        recipient=_recipient("ct_dead"),
        dedup_key="escalation:ct_dead:outcome",
    )
    assert dedup.deduplicated and dedup.message.message_id == dead.message_id
    await notifier.outbox("ct_dead")
    assert len(notifier.sink.store.select(to="ct_dead@example.com")) == 1

    # Now sent: a resend is refused with the reason, and changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.ResendMessage(
            pb.ResendMessageRequest(
                workspace_id=WORKSPACE, message_id=dead.message_id, idempotency_key="resend-2"
            ),
            metadata=ADMIN,
        )
    code, reason, _ = testing.error_details(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MESSAGE_NOT_RESENDABLE")
    assert "sent" in (caught.value.details() or "")
    assert (await notifier.message(dead.message_id)).status == pb.MESSAGE_STATUS_SENT


async def test_resend_needs_an_admin_of_the_workspace(notifier: Notifier) -> None:
    dead = await _dead_message(notifier, "ct_dead_2")
    request = pb.ResendMessageRequest(
        workspace_id=WORKSPACE, message_id=dead.message_id, idempotency_key="resend-x"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.ResendMessage(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = testing.TEST_ADMIN_PROVIDER.issue("admin-other", workspaces=["ws_other"])
    other = (("authorization", f"Bearer {token}"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.ResendMessage(request, metadata=other)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await notifier.message(dead.message_id)).status == pb.MESSAGE_STATUS_DEAD


async def test_the_workspace_outbox_lists_dead_letters_for_an_admin(notifier: Notifier) -> None:
    dead = await _dead_message(notifier, "ct_listed")
    ok = await notifier.send(template=pb.TEMPLATE_CANCELLATION_UNDONE, recipient=_recipient("c2"))
    await notifier.wait_status(ok.message.message_id, pb.MESSAGE_STATUS_SENT)
    listing = pb.ListMessagesRequest(workspace_id=WORKSPACE, status=pb.MESSAGE_STATUS_DEAD)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.ListMessages(listing)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answer = await notifier.stub.ListMessages(listing, metadata=ADMIN)
    assert [m.message_id for m in answer.messages] == [dead.message_id]
    everything = await notifier.stub.ListMessages(
        pb.ListMessagesRequest(workspace_id=WORKSPACE), metadata=ADMIN
    )
    assert {dead.message_id, ok.message.message_id} <= {m.message_id for m in everything.messages}
    # A contact's own list works as before, without an admin.
    mine = await notifier.stub.ListMessages(
        pb.ListMessagesRequest(workspace_id=WORKSPACE, contact_id="c2")
    )
    assert [m.message_id for m in mine.messages] == [ok.message.message_id]
