"""The WhatsApp Cloud API adapter: the webhook's verification handshake, delivery statuses
(to the notifier), "LINK <code>" proofs (to ``whatsapp_linking``), and inbound messages of
proven numbers as chat turns whose replies go back over WhatsApp. A number nobody proved is
an unverified visitor and gets nothing back. A message's turn runs once (``turn_keys``, on
WhatsApp's message id): a redelivery of it gets the first answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from askvault.notifier.v1 import notifier_pb2 as npb
from edge import (
    turn_keys,
    whatsapp_consent,
    whatsapp_linking,
    whatsapp_replies,
    whatsapp_storage,
)
from edge.domain import whatsapp_keywords, whatsapp_proof
from edge.domain.whatsapp_keywords import Keyword
from edge.http_api import Edge
from edge.http_middleware import error
from edge.turn import Reply, Request, VisitorIdentity

logger = logging.getLogger(__name__)

# Notifier failures that pass: the webhook is answered 503 so that WhatsApp delivers it again
# (a 2xx tells WhatsApp it was taken, and it never sends it again).
_PASSING = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class NotTaken(Exception):
    """A status or a message could not be handled for now (the notifier or a service the
    turn needs unavailable): WhatsApp must redeliver."""


def _passing(failure: grpc.aio.AioRpcError) -> bool:
    return failure.code() in _PASSING


# Quick-reply buttons of the failed-payment message, as the text a visitor would type.
_BUTTON_TEXT = {
    "RETRY_PAYMENT": "retry now",
    "UPDATE_CARD": "update my card",
    "TALK_TO_HUMAN": "talk to a human",
}


def _list_of_dicts(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{where} must be a list of objects")
    return value


def whatsapp_values(body: Any) -> list[dict[str, Any]]:
    """The ``value`` objects of a WhatsApp Cloud API webhook, with the shapes the edge reads
    checked (lists of objects, string ids, numeric timestamps); ValueError otherwise."""
    if not isinstance(body, dict):
        raise ValueError("the body must be an object")
    values = []
    for entry in _list_of_dicts(body.get("entry"), "entry"):
        for change in _list_of_dicts(entry.get("changes"), "entry.changes"):
            value = change.get("value", {})
            if not isinstance(value, dict):
                raise ValueError("entry.changes.value must be an object")
            metadata = value.get("metadata", {})
            if not isinstance(metadata, dict):
                raise ValueError("value.metadata must be an object")
            for status in _list_of_dicts(value.get("statuses"), "value.statuses"):
                if not str(status.get("timestamp", "0") or "0").isdigit():
                    raise ValueError("value.statuses.timestamp must be unix seconds")
                _list_of_dicts(status.get("errors"), "value.statuses.errors")
            for message in _list_of_dicts(value.get("messages"), "value.messages"):
                for part in ("button", "interactive", "text"):
                    if not isinstance(message.get(part, {}), dict):
                        raise ValueError(f"value.messages.{part} must be an object")
            values.append(value)
    return values


class WhatsAppWebhook:
    """``GET``/``POST /api/whatsapp/webhook``, bound to the edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    def routes(self) -> list[Route]:
        """The routes this module serves."""
        return [
            Route("/api/whatsapp/webhook", self.verify, methods=["GET"]),
            Route("/api/whatsapp/webhook", self.webhook, methods=["POST"]),
        ]

    async def verify(self, request: HttpRequest) -> Response:
        params = request.query_params
        expected = self._edge.settings.whatsapp_verify_token.get_secret_value()
        if (
            params.get("hub.mode") == "subscribe"
            and expected
            and hmac.compare_digest(params.get("hub.verify_token", "").encode(), expected.encode())
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        return error(403, "VERIFY_TOKEN_MISMATCH", "verification failed")

    async def webhook(self, request: HttpRequest) -> Response:
        secret = self._edge.settings.whatsapp_app_secret.get_secret_value()
        try:
            payload = await request.body()
        except HTTPException:
            return error(413, "PAYLOAD_TOO_LARGE", "body too large")
        header = request.headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
        if not secret or not hmac.compare_digest(header.encode(), expected.encode()):
            return error(401, "SIGNATURE_INVALID", "bad X-Hub-Signature-256")
        try:
            body = json.loads(payload)
        except ValueError:
            return error(400, "INVALID_JSON", "the body is not JSON")
        except RecursionError:
            return error(400, "INVALID_JSON", "the body's JSON is nested too deeply")
        try:
            values = whatsapp_values(body)
        except ValueError as problem:
            # Signed but not the Cloud API's shape: a 4xx, so Meta does not retry it forever.
            return error(400, "INVALID_PAYLOAD", str(problem))
        try:
            for value in values:
                await self._value(value)
        except NotTaken as failure:
            # Redelivered whole: the statuses apply again harmlessly (the newest wins), and a
            # message answered already gets its first answer again (``_answer``).
            return error(503, "UNAVAILABLE", str(failure))
        return JSONResponse({"received": True})

    def _workspace(self, phone_number_id: str) -> str:
        spec = self._edge.settings.whatsapp_workspaces
        for item in (part.strip() for part in spec.split(",")):
            number, sep, workspace = item.partition(":")
            if sep and number == phone_number_id:
                return workspace
            if not sep and item:
                return item
        return ""

    async def _value(self, value: dict[str, Any]) -> None:
        statuses = value.get("statuses", [])
        if statuses:
            updates = []
            for status in statuses:
                stamp = timestamp_pb2.Timestamp(seconds=int(status.get("timestamp", 0) or 0))
                errors_ = status.get("errors") or [{}]
                updates.append(
                    npb.WhatsAppStatus(
                        provider_message_id=str(status.get("id", "")),
                        status=str(status.get("status", "")),
                        occurred_at=stamp,
                        error_code=int(errors_[0].get("code", 0) or 0),
                        error_title=str(errors_[0].get("title", "")),
                    )
                )
            try:
                await self._edge.peers.notifier.IngestWhatsAppStatus(
                    npb.IngestWhatsAppStatusRequest(statuses=updates),
                    timeout=self._edge.peers.timeout(),
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("whatsapp statuses not applied", extra={"code": failure.code().name})
                if _passing(failure):
                    raise NotTaken("the delivery statuses were not applied; retry") from None
        workspace_id = self._workspace(str(value.get("metadata", {}).get("phone_number_id", "")))
        for message in value.get("messages", []):
            await self._message(workspace_id, message)

    async def _message(self, workspace_id: str, message: dict[str, Any]) -> None:
        number = "+" + re.sub(r"\D", "", str(message.get("from", "")))
        kind = message.get("type")
        if kind == "button":
            payload = str(message.get("button", {}).get("payload", ""))
            text = _BUTTON_TEXT.get(payload, str(message.get("button", {}).get("text", "")))
        elif kind == "interactive":
            reply = message.get("interactive", {}).get("button_reply", {})
            text = _BUTTON_TEXT.get(str(reply.get("id", "")), str(reply.get("title", "")))
        else:
            text = str(message.get("text", {}).get("body", ""))
        if not workspace_id or not text.strip():
            return
        code = whatsapp_proof.link_code(text) if kind == "text" else None
        if code is not None:
            # "LINK <code>": the proof that this number's holder asked to link it. Never a
            # chat turn (the code stays out of every transcript).
            await whatsapp_linking.prove(
                self._edge.pool,
                self._edge.settings,
                self._edge.peers,
                workspace_id=workspace_id,
                number=number,
                code=code,
                provider_message_id=str(message.get("id", "")),
                now=datetime.now(UTC),
            )
            return
        async with self._edge.pool.acquire() as connection:
            # Only a proven link: a number someone merely named is not their channel.
            link = await whatsapp_storage.find_whatsapp_link(connection, workspace_id, number)
        sent_at = timestamp_pb2.Timestamp(seconds=int(message.get("timestamp", 0) or time.time()))
        visitor = VisitorIdentity()
        if link is not None:
            visitor = VisitorIdentity(
                user_id=link.user_id,
                email=link.email,
                user_hash=self._edge.engine.open_whatsapp_credential(link),
            )
            try:
                await self._edge.peers.notifier.RecordInboundWhatsApp(
                    npb.RecordInboundWhatsAppRequest(
                        workspace_id=workspace_id,
                        contact_id=link.contact_id,
                        whatsapp_number=number,
                        received_at=sent_at,
                        provider_message_id=str(message.get("id", "")),
                    ),
                    timeout=self._edge.peers.timeout(),
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("inbound whatsapp not recorded", extra={"code": failure.code().name})
                if _passing(failure):
                    # Nothing answered yet: the redelivery starts this message afresh.
                    raise NotTaken("the inbound message was not recorded; retry") from None
        keyword = whatsapp_keywords.keyword(text) if kind == "text" else None
        if keyword is Keyword.HELP:
            # HELP asks for a person: the same hand-off as "talk to a human" in the chat.
            text = whatsapp_replies.WHATSAPP_HELP_TEXT
        elif keyword is not None:
            # STOP and START are about this channel, never a chat turn; a number nobody
            # proved has no consent to change (and gets nothing from us anyway).
            if link is not None:
                # Recorded as of its receipt: WhatsApp's timestamps are whole seconds, and a
                # STOP sent in the second the number was proven must not lose to the proof.
                received = timestamp_pb2.Timestamp()
                received.GetCurrentTime()
                await whatsapp_consent.stop_or_start(
                    self._edge.peers,
                    workspace_id,
                    link,
                    number,
                    keyword,
                    message_id=str(message.get("id", "")),
                    received_at=received,
                )
            return
        turn = Request(
            workspace_id=workspace_id,
            # One conversation per contact and number: a number that moved to another
            # contact (by proof) does not continue the earlier contact's conversation.
            conversation_id=(
                f"wa:{number}:{link.contact_id}" if link is not None else f"wa:{number}"
            )[:128],
            visitor=visitor,
            text=text[: self._edge.settings.max_text_chars],
            channel="whatsapp",
        )
        message_id = str(message.get("id", ""))
        answered = await self._answer(turn, number, message_id)
        if isinstance(answered, JSONResponse):
            if answered.status_code >= 500 or answered.status_code == 409:
                # The turn could not be answered for now (a service or the database down, or
                # another delivery of this message still running it): the redelivery answers
                # it; a 200 would leave the question unanswered for good.
                raise NotTaken("the message could not be answered now; retry")
            return
        if link is not None:
            try:
                await self._edge.peers.notifier.Send(
                    npb.SendRequest(
                        workspace_id=workspace_id,
                        recipient=npb.Recipient(
                            contact_id=link.contact_id, whatsapp_number=number, email=link.email
                        ),
                        template=npb.TEMPLATE_CHAT_REPLY,
                        channel=npb.CHANNEL_WHATSAPP,
                        variables={"text": answered},
                        # A redelivery replays the first answer: the same text under the same
                        # key, which the notifier queues once.
                        dedup_key=f"edge:wa-reply:{message_id}",
                    ),
                    timeout=self._edge.peers.timeout(),
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("whatsapp reply not queued", extra={"code": failure.code().name})
                if _passing(failure):
                    raise NotTaken("the reply was not queued; retry") from None

    async def _answer(self, turn: Request, number: str, message_id: str) -> str | JSONResponse:
        """The reply's text, or the error the turn was answered with. Run once per message:
        a redelivery of it (its reply was not queued, or the edge died before answering the
        webhook) gets the first answer instead of a second run of the turn, whose "yes"
        would find the offer already used."""
        if not message_id:
            reply = await self._edge.answer(turn)
            return reply.text if isinstance(reply, Reply) else reply
        answered = await self._edge.turn_keys.once(
            turn,
            turn_keys.whatsapp_message_key(number, message_id),
            lambda: self._edge.answer(turn),
        )
        if isinstance(answered, JSONResponse):
            if answered.status_code == 422:
                # The id was answered for another turn: the number was proven by another
                # contact between the deliveries. Not this contact's answer to send.
                logger.warning("whatsapp message id answered for another turn")
            return answered
        return str(answered["reply"])
