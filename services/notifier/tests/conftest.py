"""Fixtures for notifier's tests: a real SMTP sink, the WhatsApp emulator, a webhook bridge
(what the edge does: verify the signature, pass the statuses on) and a running notifier
server on a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from aiohttp import web

from askvault.notifier.v1 import notifier_pb2 as pb
from askvault.notifier.v1 import notifier_pb2_grpc
from notifier.service import NotifierService
from notifier.settings import NotifierSettings
from runtime import testing
from runtime.server import RunningService
from smtp_sink import app as smtp_sink_app
from whatsapp_emulator import app as whatsapp_app
from whatsapp_emulator import signing

WORKSPACE = "ws_test"
PHONE_NUMBER_ID = "1098765432"
WHATSAPP_TOKEN = "test-whatsapp-token"
APP_SECRET = "test-app-secret"
AGENT_INBOX = "agents@support.example"
MESSAGE_ID_DOMAIN = "notifier.test"


def notifier_settings(
    database_url: str,
    sink: smtp_sink_app.RunningSink,
    whatsapp: whatsapp_app.RunningEmulator,
    **values: Any,
) -> NotifierSettings:
    """Settings pointing at the test sink and emulator, with quick polls and retries."""
    defaults: dict[str, Any] = {
        "smtp_host": sink.host,
        "smtp_port": sink.smtp_port,
        "smtp_timeout_seconds": 2.0,
        "whatsapp_base_url": whatsapp.url,
        "whatsapp_access_token": WHATSAPP_TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        # Generous for a loaded machine (a slow answer would count as an attempt), yet under
        # the delivery deadline the lease gives (0.75 x lease_seconds).
        "whatsapp_timeout_seconds": 2.0,
        "http_timeout_seconds": 2.0,
        "message_id_domain": MESSAGE_ID_DOMAIN,
        "worker_count": 2,
        "worker_concurrency": 8,
        "poll_interval_seconds": 0.05,
        "max_attempts": 3,
        "retry_backoff_base_seconds": 0.05,
        "retry_backoff_cap_seconds": 0.2,
        "lease_seconds": 5.0,
        "agent_inbox_address": AGENT_INBOX,
        "database_pool_max_size": 20,
    }
    defaults.update(values)
    return testing.make_settings(NotifierSettings, database_url, **defaults)


@pytest.fixture
async def sink() -> AsyncIterator[smtp_sink_app.RunningSink]:
    """An SMTP sink on free ports."""
    running = await smtp_sink_app.start()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def whatsapp() -> AsyncIterator[whatsapp_app.RunningEmulator]:
    """The WhatsApp emulator on a free port."""
    state = whatsapp_app.State(
        access_token=WHATSAPP_TOKEN, app_secret=APP_SECRET, status_delay_seconds=0.05
    )
    running = await whatsapp_app.start(state=state)
    try:
        yield running
    finally:
        await running.close()


@dataclass
class Notifier:
    """A running notifier and what the tests talk to."""

    server: RunningService
    stub: notifier_pb2_grpc.NotifierServiceAsyncStub
    settings: NotifierSettings
    sink: smtp_sink_app.RunningSink
    whatsapp: whatsapp_app.RunningEmulator
    webhook_answers: list[int] = field(default_factory=list)

    async def send(self, **fields: Any) -> pb.SendResponse:
        """Send with test defaults (workspace, a contact with an email, a dedup key)."""
        fields.setdefault("workspace_id", WORKSPACE)
        fields.setdefault(
            "recipient", pb.Recipient(contact_id="ct_1", email="ann@example.com", name="Ann")
        )
        fields.setdefault("dedup_key", f"key-{time.monotonic_ns()}")
        response: pb.SendResponse = await self.stub.Send(pb.SendRequest(**fields))
        return response

    async def message(self, message_id: str, workspace_id: str = WORKSPACE) -> pb.Message:
        """The message as GetMessage shows it."""
        response: pb.GetMessageResponse = await self.stub.GetMessage(
            pb.GetMessageRequest(workspace_id=workspace_id, message_id=message_id)
        )
        return response.message

    async def wait_for(
        self,
        message_id: str,
        done: Callable[[pb.Message], bool],
        timeout: float = 10.0,
    ) -> pb.Message:
        """Polls GetMessage until ``done`` holds (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.message(message_id)
            if done(message):
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"message never got there: {message}")
            await asyncio.sleep(0.02)

    async def wait_status(
        self, message_id: str, *statuses: int, timeout: float = 10.0
    ) -> pb.Message:
        """Polls until the message has one of the statuses."""
        return await self.wait_for(message_id, lambda m: m.status in statuses, timeout)

    async def outbox(self, contact_id: str) -> list[pb.Message]:
        """Every message of a contact, asserting none is still queued: with nothing queued,
        nothing more can be sent, so what the providers received so far is all they get
        (this replaces sleeping to see that nothing else happens)."""
        response: pb.ListMessagesResponse = await self.stub.ListMessages(
            pb.ListMessagesRequest(workspace_id=WORKSPACE, contact_id=contact_id, page_size=500)
        )
        queued = [m.message_id for m in response.messages if m.status == pb.MESSAGE_STATUS_QUEUED]
        assert queued == [], f"still queued: {queued}"
        return list(response.messages)

    async def consent(
        self, contact_id: str, opted_in: bool, number: str = "+14155550100", **fields: Any
    ) -> pb.ChannelConsent:
        """Records a WhatsApp consent."""
        response: pb.SetChannelConsentResponse = await self.stub.SetChannelConsent(
            pb.SetChannelConsentRequest(
                workspace_id=WORKSPACE,
                contact_id=contact_id,
                consent=pb.ChannelConsent(
                    channel=fields.pop("channel", pb.CHANNEL_WHATSAPP),
                    opted_in=opted_in,
                    source=fields.pop("source", "widget_checkbox"),
                    whatsapp_number=number,
                    **fields,
                ),
                idempotency_key=f"consent-{time.monotonic_ns()}",
            )
        )
        return response.consent


def statuses_from_webhook(payload: dict[str, Any]) -> list[pb.WhatsAppStatus]:
    """The statuses of a Cloud API webhook body, as the edge would pass them on."""
    found = []
    for entry in payload.get("entry", []):
        for change in entry.get("changes", []):
            for status in change.get("value", {}).get("statuses", []):
                error = (status.get("errors") or [{}])[0]
                occurred = pb.WhatsAppStatus().occurred_at
                occurred.FromDatetime(datetime.fromtimestamp(int(status["timestamp"]), UTC))
                found.append(
                    pb.WhatsAppStatus(
                        provider_message_id=status["id"],
                        status=status["status"],
                        occurred_at=occurred,
                        error_code=int(error.get("code", 0)),
                        error_title=str(error.get("title", "")),
                    )
                )
    return found


async def _start_bridge(
    handler: Callable[[web.Request], Awaitable[web.Response]],
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


@pytest.fixture
async def notifier_factory(
    database_url: str,
    sink: smtp_sink_app.RunningSink,
    whatsapp: whatsapp_app.RunningEmulator,
) -> AsyncIterator[Callable[..., Awaitable[Notifier]]]:
    """Starts a notifier (settings overridable) with the emulator's webhooks bridged to it."""
    stack = contextlib.AsyncExitStack()

    async def start(**values: Any) -> Notifier:
        settings = notifier_settings(database_url, sink, whatsapp, **values)
        service = NotifierService(settings)
        started = await stack.enter_async_context(testing.running(service, settings))
        channel = grpc.aio.insecure_channel(started.address)
        stack.push_async_callback(channel.close)
        stub = notifier_pb2_grpc.NotifierServiceStub(channel)
        notifier = Notifier(started, stub, settings, sink, whatsapp)

        async def bridge(request: web.Request) -> web.Response:
            raw = await request.read()
            if not signing.verify(raw, APP_SECRET, request.headers.get(signing.HEADER, "")):
                notifier.webhook_answers.append(401)
                return web.Response(status=401)
            statuses = statuses_from_webhook(json.loads(raw))
            if statuses:
                await stub.IngestWhatsAppStatus(pb.IngestWhatsAppStatusRequest(statuses=statuses))
            notifier.webhook_answers.append(200)
            return web.Response(status=200)

        runner, url = await _start_bridge(bridge)
        stack.push_async_callback(runner.cleanup)
        whatsapp.state.webhook_url = url
        return notifier

    async with stack:
        yield start


@pytest.fixture
async def notifier(notifier_factory: Callable[..., Awaitable[Notifier]]) -> Notifier:
    """A notifier with two workers."""
    return await notifier_factory()
