"""Send by email, dedup keys (also concurrent), variables, limits, settings, listing."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.tests.conftest import MESSAGE_ID_DOMAIN, WORKSPACE, Notifier
from runtime import testing

PAYMENT_FAILED_VARIABLES = {
    "amount": "$49.00",
    "update_card_url": "https://billing.example.com/card",
}


async def test_payment_failed_goes_by_email_with_a_deterministic_message_id(
    notifier: Notifier,
) -> None:
    await notifier.stub.UpdateWorkspaceSettings(
        pb.UpdateWorkspaceSettingsRequest(
            settings=pb.WorkspaceSettings(
                workspace_id=WORKSPACE,
                sender_name="Acme Billing",
                from_address="billing@acme.example",
                reply_to="help@acme.example",
            ),
            idempotency_key="settings-1",
        ),
        metadata=testing.admin_metadata(),
    )
    sent = await notifier.send(
        template=pb.TEMPLATE_PAYMENT_FAILED, variables=PAYMENT_FAILED_VARIABLES
    )
    assert sent.message.status == pb.MESSAGE_STATUS_QUEUED
    assert sent.message.channel == pb.CHANNEL_EMAIL
    assert not sent.deduplicated

    message = await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)
    expected_id = f"<{sent.message.message_id}@{MESSAGE_ID_DOMAIN}>"
    assert message.provider_message_id == expected_id
    assert message.attempts == 1
    assert message.HasField("sent_at")
    [mail] = notifier.sink.store.select(message_id=expected_id)
    assert mail.rcpt_tos == ("ann@example.com",)
    assert mail.headers["From"] == "Acme Billing <billing@acme.example>"
    assert mail.headers["Reply-To"] == "help@acme.example"
    assert "$49.00" in mail.subject
    assert "https://billing.example.com/card" in mail.text
    assert "Hi Ann" in mail.text
    assert "<b>$49.00</b>" in mail.html
    # Optional variables that were not given leave no empty line behind.
    assert "Invoice:" not in mail.text


async def test_the_same_dedup_key_returns_the_same_message_and_sends_once(
    notifier: Notifier,
) -> None:
    first = await notifier.send(
        template=pb.TEMPLATE_REFUND_CONFIRMATION, variables={"amount": "$5"}, dedup_key="evt_1"
    )
    second = await notifier.send(
        template=pb.TEMPLATE_REFUND_CONFIRMATION, variables={"amount": "$5"}, dedup_key="evt_1"
    )
    assert second.deduplicated
    assert second.message.message_id == first.message.message_id
    await notifier.wait_status(first.message.message_id, pb.MESSAGE_STATUS_SENT)
    third = await notifier.send(
        template=pb.TEMPLATE_REFUND_CONFIRMATION, variables={"amount": "$5"}, dedup_key="evt_1"
    )
    assert third.deduplicated
    assert third.message.status == pb.MESSAGE_STATUS_SENT
    assert [m.message_id for m in await notifier.outbox("ct_1")] == [first.message.message_id]
    assert len(notifier.sink.store.select(to="ann@example.com")) == 1


async def test_a_dedup_key_sent_concurrently_makes_one_message(notifier: Notifier) -> None:
    responses = await asyncio.gather(
        *(
            notifier.send(
                template=pb.TEMPLATE_PLAN_CHANGE_CONFIRMATION,
                variables={"new_plan": "Growth"},
                dedup_key="evt_concurrent",
            )
            for _ in range(20)
        )
    )
    assert len({r.message.message_id for r in responses}) == 1
    assert sum(not r.deduplicated for r in responses) == 1
    await notifier.wait_status(responses[0].message.message_id, pb.MESSAGE_STATUS_SENT)
    assert len(await notifier.outbox("ct_1")) == 1
    assert notifier.sink.store.stats()["received"] == 1


async def test_a_dedup_key_reused_for_other_content_is_refused(notifier: Notifier) -> None:
    await notifier.send(
        template=pb.TEMPLATE_REFUND_CONFIRMATION, variables={"amount": "$5"}, dedup_key="k"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(
            template=pb.TEMPLATE_REFUND_CONFIRMATION, variables={"amount": "$6"}, dedup_key="k"
        )
    code, reason, _ = testing.error_details(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "IDEMPOTENCY_MISMATCH")


async def test_missing_variables_are_named(notifier: Notifier) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(template=pb.TEMPLATE_PAYMENT_FAILED, variables={"amount": "$1"})
    code, reason, violations = testing.error_details(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert reason == "INVALID_ARGUMENT"
    assert "variables.update_card_url" in violations
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.send(template=pb.TEMPLATE_UNSPECIFIED, dedup_key="")
    _, _, violations = testing.error_details(caught.value)
    assert {"template", "dedup_key"} <= set(violations)


async def test_contact_and_workspace_limits_hold_and_replays_are_not_counted(
    notifier: Notifier,
) -> None:
    await notifier.stub.UpdateWorkspaceSettings(
        pb.UpdateWorkspaceSettingsRequest(
            settings=pb.WorkspaceSettings(
                workspace_id=WORKSPACE, contact_hourly_limit=3, workspace_hourly_limit=5
            ),
            idempotency_key="limits",
        ),
        metadata=testing.admin_metadata(),
    )

    async def attempt(contact: str, key: str) -> grpc.StatusCode:
        try:
            await notifier.send(
                template=pb.TEMPLATE_CANCELLATION_UNDONE,
                recipient=pb.Recipient(contact_id=contact, email=f"{contact}@example.com"),
                dedup_key=key,
            )
        except grpc.aio.AioRpcError as error:
            code, reason, _ = testing.error_details(error)
            assert reason == "RATE_LIMITED"
            return code
        return grpc.StatusCode.OK

    # Ten concurrent sends to one contact: exactly its limit passes.
    codes = await asyncio.gather(*(attempt("ct_a", f"a{i}") for i in range(10)))
    assert codes.count(grpc.StatusCode.OK) == 3
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 7
    # A replay of an accepted key is answered, not counted.
    accepted = [f"a{i}" for i, code in enumerate(codes) if code == grpc.StatusCode.OK]
    assert await attempt("ct_a", accepted[0]) == grpc.StatusCode.OK
    # The workspace's limit (5) caps the other contacts together.
    others = await asyncio.gather(*(attempt(f"ct_{i}", f"o{i}") for i in range(6)))
    assert others.count(grpc.StatusCode.OK) == 2


async def test_list_messages_pages_newest_first(notifier: Notifier) -> None:
    ids = []
    for index in range(5):
        sent = await notifier.send(
            template=pb.TEMPLATE_CANCELLATION_DONE, dedup_key=f"list-{index}"
        )
        ids.append(sent.message.message_id)
    seen: list[str] = []
    token = ""
    while True:
        page = await notifier.stub.ListMessages(
            pb.ListMessagesRequest(
                workspace_id=WORKSPACE, contact_id="ct_1", page_size=2, page_token=token
            )
        )
        seen.extend(m.message_id for m in page.messages)
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.GetMessage(
            pb.GetMessageRequest(workspace_id="ws_other", message_id=ids[0])
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_workspace_settings_need_an_admin(notifier: Notifier) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.GetWorkspaceSettings(
            pb.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    defaults = await notifier.stub.GetWorkspaceSettings(
        pb.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE),
        metadata=testing.admin_metadata(),
    )
    assert defaults.settings.contact_hourly_limit == notifier.settings.default_contact_hourly_limit
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notifier.stub.UpdateWorkspaceSettings(
            pb.UpdateWorkspaceSettingsRequest(
                settings=pb.WorkspaceSettings(
                    workspace_id=WORKSPACE,
                    sender_name="Evil\r\nBcc: all@example.com",
                    helpdesk_webhook_url="ftp://x",
                ),
                idempotency_key="bad",
            ),
            metadata=testing.admin_metadata(),
        )
    _, _, violations = testing.error_details(caught.value)
    assert {"settings.sender_name", "settings.helpdesk_webhook_url"} <= set(violations)
