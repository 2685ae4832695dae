"""Hand-offs to a helpdesk webhook are signed per Standard Webhooks: a real receiver verifies
them with the standardwebhooks library, a tampered body or a wrong secret is refused, a retry
keeps its webhook-id, and the secret is stored sealed and never logged."""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import grpc
import pytest
import standardwebhooks
from aiohttp import web

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.tests.conftest import WORKSPACE, Notifier
from runtime import testing


def new_secret() -> str:
    return f"whsec_{base64.b64encode(os.urandom(32)).decode()}"


@dataclass
class Delivery:
    """One request the receiver got, as it came."""

    body: bytes
    headers: dict[str, str]
    verified: bool


@dataclass
class Receiver:
    """A helpdesk that verifies each request with its secret (401 when it does not verify)."""

    url: str
    secret: str = ""
    # False: an unsigned (or badly signed) request is taken too, as a helpdesk that does
    # not verify would.
    require_signature: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="", secret=new_secret())

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        headers = dict(request.headers)
        try:
            standardwebhooks.Webhook(state.secret).verify(raw, headers)
            verified = True
        except standardwebhooks.WebhookVerificationError:
            verified = False
        state.deliveries.append(Delivery(raw, headers, verified))
        if not verified and state.require_signature:
            return web.Response(status=401)
        return web.Response(status=state.answers.pop(0) if state.answers else 202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def notifier(notifier_factory: Callable[..., Awaitable[Notifier]]) -> Notifier:
    keys = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    return await notifier_factory(secrets_encryption_keys=keys, agent_inbox_address="")


async def set_url(notifier: Notifier, url: str) -> None:
    await notifier.stub.UpdateWorkspaceSettings(
        pb.UpdateWorkspaceSettingsRequest(
            settings=pb.WorkspaceSettings(workspace_id=WORKSPACE, helpdesk_webhook_url=url),
            idempotency_key=f"url-{time.monotonic_ns()}",
        ),
        metadata=testing.admin_metadata(),
    )


async def set_secret(notifier: Notifier, secret: str) -> pb.WorkspaceSettings:
    response: pb.SetHelpdeskWebhookSecretResponse = await notifier.stub.SetHelpdeskWebhookSecret(
        pb.SetHelpdeskWebhookSecretRequest(
            workspace_id=WORKSPACE, secret=secret, idempotency_key=f"s-{time.monotonic_ns()}"
        ),
        metadata=testing.admin_metadata(),
    )
    return response.settings


async def handoff(notifier: Notifier) -> pb.Message:
    sent = await notifier.send(
        template=pb.TEMPLATE_HANDOFF,
        variables={"reason": "refund over the cap", "summary": "Wants $900 back"},
    )
    assert sent.message.channel == pb.CHANNEL_HELPDESK_WEBHOOK
    return await notifier.wait_status(sent.message.message_id, pb.MESSAGE_STATUS_SENT)


async def test_a_rotated_secret_signs_and_a_retry_keeps_the_webhook_id(
    notifier: Notifier, receiver: Receiver
) -> None:
    await set_url(notifier, receiver.url)
    first = await set_secret(notifier, new_secret())
    assert first.helpdesk_webhook_signed
    # Rotation: the newer secret replaces the first, which no longer verifies.
    receiver.secret = new_secret()
    await set_secret(notifier, receiver.secret)
    receiver.answers.append(503)
    message = await handoff(notifier)
    assert message.attempts == 2
    assert [d.verified for d in receiver.deliveries] == [True, True]
    ids = {d.headers["webhook-id"] for d in receiver.deliveries}
    assert ids == {message.message_id}
    assert {d.headers["Idempotency-Key"] for d in receiver.deliveries} == {message.message_id}
    assert all(d.headers["webhook-signature"].startswith("v1,") for d in receiver.deliveries)


async def test_a_tampered_body_or_a_wrong_secret_is_refused(
    notifier: Notifier, receiver: Receiver
) -> None:
    receiver.secret = new_secret()
    await set_url(notifier, receiver.url)
    await set_secret(notifier, receiver.secret)
    await handoff(notifier)
    [genuine] = receiver.deliveries
    assert genuine.verified
    verifier = standardwebhooks.Webhook(receiver.secret)
    tampered = genuine.body.replace(b"refund over the cap", b"refund under the cap")
    assert tampered != genuine.body
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(tampered, genuine.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(genuine.body, genuine.headers)
    unsigned = {k: v for k, v in genuine.headers.items() if k != "webhook-signature"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(genuine.body, unsigned)
    assert verifier.verify(genuine.body, genuine.headers)["type"] == "askvault.handoff"


async def test_the_secret_is_stored_sealed_and_never_logged(
    notifier: Notifier, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.secret = new_secret()
    await set_url(notifier, receiver.url)
    await set_secret(notifier, receiver.secret)
    receiver.answers.extend([500, 429])
    message = await handoff(notifier)
    assert message.attempts == 3 and all(d.verified for d in receiver.deliveries)
    material = receiver.secret.removeprefix("whsec_")
    assert caplog.records, "the flow logged nothing: the check would prove nothing"
    assert material not in caplog.text
    connection = await asyncpg.connect(notifier.settings.database_url.get_secret_value())
    try:
        stored = await connection.fetchval(
            "SELECT helpdesk_webhook_secret FROM notifier.workspace_settings"
            " WHERE workspace_id = $1",
            WORKSPACE,
        )
        dump = await connection.fetchval(
            "SELECT string_agg(t::text, ' ') FROM notifier.workspace_settings t"
        )
    finally:
        await connection.close()
    assert stored is not None
    assert material.encode() not in bytes(stored)
    assert receiver.secret not in dump and material not in dump
    shown = await notifier.stub.GetWorkspaceSettings(
        pb.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    assert shown.settings.helpdesk_webhook_signed
    assert material not in str(shown)


async def test_a_cleared_secret_sends_unsigned_and_a_malformed_one_is_refused(
    notifier: Notifier, receiver: Receiver
) -> None:
    await set_url(notifier, receiver.url)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await set_secret(notifier, "whsec_c2hvcnQ=")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "c2hvcnQ" not in (refused.value.details() or "")
    await set_secret(notifier, new_secret())
    cleared = await set_secret(notifier, "")
    assert not cleared.helpdesk_webhook_signed
    receiver.require_signature = False
    await handoff(notifier)
    [delivery] = receiver.deliveries
    assert "webhook-signature" not in delivery.headers
    assert delivery.headers["Idempotency-Key"]


async def test_a_notifier_without_encryption_keys_stores_no_secret(
    notifier_factory: Callable[..., Awaitable[Notifier]],
) -> None:
    notifier = await notifier_factory()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await set_secret(notifier, new_secret())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_default_webhook_is_signed_with_the_default_secret_only(
    notifier_factory: Callable[..., Awaitable[Notifier]], receiver: Receiver
) -> None:
    receiver.secret = new_secret()
    notifier = await notifier_factory(
        helpdesk_webhook_url=receiver.url,
        helpdesk_webhook_secret=receiver.secret,
        agent_inbox_address="",
    )
    await handoff(notifier)
    assert [d.verified for d in receiver.deliveries] == [True]
    # A workspace's own webhook never gets the secret every workspace shares.
    await set_url(notifier, receiver.url + "?workspace=own")
    receiver.require_signature = False
    await handoff(notifier)
    assert "webhook-signature" not in receiver.deliveries[-1].headers
