"""The edge's HTTP surface: chat turns, tools (JSON and MCP), Stripe and WhatsApp webhooks,
health and metrics. Bad input is a 4xx with ``{"error": {"code", "message", "fields"?}}``,
never a 5xx."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import prometheus_client
from google.protobuf import timestamp_pb2
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from askvault.billing.v1 import billing_pb2 as bpb
from askvault.notifier.v1 import notifier_pb2 as npb
from edge import ratelimit, storage, tools, whatsapp_linking
from edge.conversation import ConversationNotOwned, Engine, Reply, Request, VisitorIdentity
from edge.domain import whatsapp_proof
from edge.peers import Peers, error_reason, is_unavailable
from edge.settings import EdgeSettings
from runtime.database import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("askvault.edge")

_REGISTRY = prometheus_client.CollectorRegistry()
_REQUESTS = prometheus_client.Counter(
    "askvault_edge_http_requests",
    "HTTP requests by route and status",
    ["route", "status"],
    registry=_REGISTRY,
)
_DURATION = prometheus_client.Histogram(
    "askvault_edge_http_duration_seconds",
    "HTTP handling time by route",
    ["route"],
    registry=_REGISTRY,
)
_INTENTS = prometheus_client.Counter(
    "askvault_edge_turns",
    "Chat turns by intent and outcome",
    ["intent", "status"],
    registry=_REGISTRY,
)
_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,128}$")
# What workspace, conversation and quote ids look like.
ID_PATTERN = _ID


def visitor_from_json(visitor: Any, fields: dict[str, str]) -> VisitorIdentity | None:
    """The visitor object of a chat turn or a confirmation; problems go into ``fields``."""
    if not isinstance(visitor, dict):
        fields["visitor"] = "must be an object"
        return None
    for name in ("user_id", "email", "user_hash", "token"):
        value = visitor.get(name, "")
        if not isinstance(value, str) or len(value) > 4096:
            fields[f"visitor.{name}"] = "must be a string"
    if visitor.get("user_hash") and visitor.get("token"):
        fields["visitor"] = "give user_hash or token, not both"
    if fields:
        return None
    return VisitorIdentity(
        user_id=str(visitor.get("user_id", "")),
        email=str(visitor.get("email", "")),
        user_hash=str(visitor.get("user_hash", "")),
        token=str(visitor.get("token", "")),
    )


def error(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> JSONResponse:
    """The error body every 4xx carries."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return JSONResponse({"error": body}, status_code=status)


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


class JsonErrorBodies:
    """Gives a library's own refusals (the MCP transport answers some 4xx in plain text or
    empty) the JSON error body every 4xx of the edge carries. A class, not a function, so
    Starlette mounts it as an ASGI app rather than as a request handler."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        held: dict[str, Any] | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                content_type = headers.get(b"content-type", b"")
                if message["status"] >= 400 and b"json" not in content_type:
                    held = dict(message)
                    return
            elif held is not None and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                status = int(held["status"])
                text = body.decode(errors="replace").strip() or HTTPStatus(status).phrase
                payload = json.dumps(
                    {"error": {"code": f"HTTP_{status}", "message": text}}
                ).encode()
                kept = [
                    (key, value)
                    for key, value in held.get("headers", [])
                    if key.lower() not in (b"content-type", b"content-length")
                ]
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            *kept,
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": payload})
                return
            await send(message)

        await app(scope, receive, rewrite)


class BodyLimit:
    """Refuses bodies over the limit with 413, by Content-Length or by counting the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self._max:
                await error(413, "PAYLOAD_TOO_LARGE", f"body over {self._max} bytes")(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    raise HTTPException(413, "body too large")
            return message

        await self._app(scope, limited, send)


class AddressLimited:
    """Limits an ASGI app (the MCP transport) per client address, like every other entry: the
    visitor is not verified before the tool call runs, so the address is all there is."""

    def __init__(self, app: ASGIApp, edge: Edge) -> None:
        self._app = app
        self._edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._edge.address_limit.allow(
            self._edge.client_address(scope)
        ):
            await error(429, "RATE_LIMITED", "too many requests from this address")(
                scope, receive, send
            )
            return
        await self._app(scope, receive, send)


class Edge:
    """The handlers, bound to the engine and settings."""

    def __init__(self, settings: EdgeSettings, engine: Engine, peers: Peers, pool: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.peers = peers
        self.pool = pool
        self.draining = False
        self.database_ok = True
        # Before verification nothing but the client's address is known for sure; the limits
        # per verified contact and per customer are the engine's (ratelimit.TurnLimits).
        self.address_limit = ratelimit.RateLimiter(settings.address_requests_per_minute)
        self.trusted_proxies = ratelimit.trusted_networks(settings.trusted_proxies)

    # ----- helpers -----

    def client_address(self, scope: Scope) -> str:
        """The client's address (an IPv6 client's /64): the socket peer, or behind a trusted
        proxy the right-most X-Forwarded-For hop that is not a trusted proxy (uvicorn's own
        proxy handling is off, so this is the only reader of the header)."""
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name == b"x-forwarded-for"
        ]
        return ratelimit.address_key(
            ratelimit.client_address(peer, forwarded, self.trusted_proxies)
        )

    def address_allowed(self, request: HttpRequest) -> bool:
        """Whether the client's address is within its request budget."""
        return self.address_limit.allow(self.client_address(request.scope))

    async def json_body(self, request: HttpRequest) -> dict[str, Any] | JSONResponse:
        """The request's JSON object, or the 4xx answer for a body that is not one."""
        try:
            body = await request.body()
        except HTTPException:
            return error(413, "PAYLOAD_TOO_LARGE", "body too large")
        try:
            value = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return error(400, "INVALID_JSON", "the body is not JSON")
        except RecursionError:
            # Nesting deeper than the parser's recursion limit: hostile, never a real request.
            return error(400, "INVALID_JSON", "the body's JSON is nested too deeply")
        if not isinstance(value, dict):
            return error(400, "INVALID_ARGUMENT", "the body must be a JSON object")
        return value

    async def answer(self, request: Request) -> Reply | JSONResponse:
        """One turn through the engine, limited and traced (chat, tools, WhatsApp, confirm)."""
        with tracer.start_as_current_span("edge.turn") as span:
            span.set_attribute("askvault.workspace_id", request.workspace_id)
            span.set_attribute("askvault.channel", request.channel)
            try:
                reply = await self.engine.handle(request)
            except ratelimit.RateLimited as limited:
                # Counted only once the visitor is proven: a claimed user id limits nobody.
                return error(
                    429,
                    "RATE_LIMITED",
                    f"too many messages for this {limited.scope}; wait a minute",
                )
            except ConversationNotOwned:
                return error(
                    403,
                    "CONVERSATION_NOT_OWNED",
                    "this conversation belongs to another visitor; start a new conversation",
                )
            except UNAVAILABLE_ERRORS as failure:
                # The edge's own database (conversation state) is unreachable: nothing was
                # decided or moved, and the client may retry.
                logger.warning("database unavailable", extra={"error": type(failure).__name__})
                return error(503, "DATABASE_UNAVAILABLE", "try again shortly")
            except grpc.aio.AioRpcError as failure:
                logger.warning(
                    "dependency failed",
                    extra={"code": failure.code().name, "reason": error_reason(failure)},
                )
                if is_unavailable(failure):
                    return error(
                        503, "DEPENDENCY_UNAVAILABLE", "a service is unavailable; try again shortly"
                    )
                return error(502, "DEPENDENCY_ERROR", "a service refused the request")
            span.set_attribute("askvault.intent", reply.intent)
        _INTENTS.labels(reply.intent, reply.status).inc()
        return reply

    # ----- chat -----

    async def chat_turn(self, request: HttpRequest) -> Response:
        if not self.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        body = await self.json_body(request)
        if isinstance(body, JSONResponse):
            return body
        fields: dict[str, str] = {}
        workspace_id = body.get("workspace_id")
        conversation_id = body.get("conversation_id")
        text = body.get("text")
        visitor = body.get("visitor", {})
        if not isinstance(workspace_id, str) or not _ID.match(workspace_id):
            fields["workspace_id"] = "required: letters, digits and _.:@+- (at most 128)"
        if not isinstance(conversation_id, str) or not _ID.match(conversation_id):
            fields["conversation_id"] = "required: letters, digits and _.:@+- (at most 128)"
        if not isinstance(text, str) or not text.strip():
            fields["text"] = "required"
        elif len(text) > self.settings.max_text_chars:
            fields["text"] = f"at most {self.settings.max_text_chars} characters"
        identity = visitor_from_json(visitor, fields)
        if fields or identity is None:
            return error(400, "INVALID_ARGUMENT", "invalid chat turn", fields)
        answer = await self.answer(
            Request(
                workspace_id=str(workspace_id),
                conversation_id=str(conversation_id),
                visitor=identity,
                text=str(text),
            )
        )
        if isinstance(answer, JSONResponse):
            return answer
        return JSONResponse(answer.as_json())

    # ----- tools -----

    async def list_tools(self, request: HttpRequest) -> Response:
        if not self.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        return JSONResponse({"tools": [tool.definition() for tool in tools.TOOLS.values()]})

    def identity_from_headers(
        self, headers: Any
    ) -> tuple[str, str, VisitorIdentity] | JSONResponse:
        """(workspace, conversation, visitor) from X-AskVault-* headers or a bearer token."""
        workspace_id = headers.get("x-askvault-workspace", "")
        conversation_id = headers.get("x-askvault-conversation", "") or "tools"
        fields = {}
        if not _ID.match(workspace_id):
            fields["X-AskVault-Workspace"] = "required"
        if not _ID.match(conversation_id):
            fields["X-AskVault-Conversation"] = "letters, digits and _.:@+- (at most 128)"
        if fields:
            return error(400, "INVALID_ARGUMENT", "identity headers missing", fields)
        authorization = headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        visitor = VisitorIdentity(
            user_id=headers.get("x-askvault-user-id", ""),
            email=headers.get("x-askvault-user-email", ""),
            user_hash=headers.get("x-askvault-user-hash", ""),
            token=token,
        )
        scoped = f"{conversation_id}:{visitor.key}"
        return workspace_id, scoped[:200], visitor

    async def call_tool_json(self, request: HttpRequest) -> Response:
        if not self.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        tool = tools.TOOLS.get(request.path_params["name"])
        if tool is None:
            return error(404, "UNKNOWN_TOOL", "no such tool")
        body = await self.json_body(request)
        if isinstance(body, JSONResponse):
            return body
        arguments = body.get("arguments", body)
        if not isinstance(arguments, dict):
            return error(400, "INVALID_ARGUMENT", "arguments must be an object")
        result = await self.call_tool(request.headers, tool.name, arguments)
        if isinstance(result, JSONResponse):
            return result
        return JSONResponse(result)

    async def call_tool(
        self, headers: Any, name: str, arguments: dict[str, Any]
    ) -> dict[str, Any] | JSONResponse:
        """Runs a tool as a chat turn; shared by the JSON endpoint and MCP."""
        tool = tools.TOOLS.get(name)
        if tool is None:
            return error(404, "UNKNOWN_TOOL", "no such tool")
        who = self.identity_from_headers(headers)
        if isinstance(who, JSONResponse):
            return who
        workspace_id, conversation_id, visitor = who
        now = datetime.now(UTC).astimezone(ZoneInfo(self.settings.workspace_timezone))
        try:
            parsed = tools.to_parsed(tool, arguments, now)
        except tools.ToolArgumentError as problem:
            return error(400, "INVALID_ARGUMENT", "invalid tool arguments", problem.fields)
        note = str(arguments.get("note", ""))
        answer = await self.answer(
            Request(
                workspace_id=workspace_id,
                conversation_id=conversation_id,
                visitor=visitor,
                text=f"[tool {tool.name}] {note}".strip(),
                channel="tools",
                parsed=parsed,
                runs_confirmed_quote=tool.moves_money,
            )
        )
        if isinstance(answer, JSONResponse):
            return answer
        result: dict[str, Any] = {
            "tool": tool.name,
            "status": answer.status,
            "message": answer.text,
            "data": answer.data,
            "escalated": answer.escalated,
        }
        if answer.escalation_id:
            result["escalation_id"] = answer.escalation_id
        if answer.status == "needs_confirmation":
            # Said to the model in words as well: it relays the quote, the person confirms.
            result["next_step"] = (
                "Tell the customer these terms. Only the customer can confirm them: in their "
                "own chat (typing yes or pressing the confirm button) or on the confirmation "
                "page their assistant app opens. Calling this tool again does not confirm."
            )
        return result

    # ----- webhooks -----

    async def stripe_webhook(self, request: HttpRequest) -> Response:
        workspace_id = request.path_params["workspace_id"]
        if not _ID.match(workspace_id):
            return error(400, "INVALID_ARGUMENT", "bad workspace id", {"workspace_id": "invalid"})
        signature = request.headers.get("stripe-signature", "")
        if not signature:
            return error(400, "SIGNATURE_INVALID", "missing Stripe-Signature")
        try:
            payload = await request.body()
        except HTTPException:
            return error(413, "PAYLOAD_TOO_LARGE", "body too large")
        try:
            stored = await self.peers.billing.IngestStripeEvent(
                bpb.IngestStripeEventRequest(
                    workspace_id=workspace_id, payload=payload, signature_header=signature
                ),
                timeout=self.settings.webhook_deadline_seconds,
            )
        except grpc.aio.AioRpcError as failure:
            reason = error_reason(failure)
            if failure.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                return error(400, reason or "INVALID_ARGUMENT", "the event was refused")
            # Not stored: Stripe retries on a non-2xx.
            return error(503, reason or "UNAVAILABLE", "the event could not be stored; retry")
        return JSONResponse(
            {"received": True, "event_id": stored.event_id, "duplicate": stored.duplicate}
        )

    async def whatsapp_verify(self, request: HttpRequest) -> Response:
        params = request.query_params
        expected = self.settings.whatsapp_verify_token.get_secret_value()
        if (
            params.get("hub.mode") == "subscribe"
            and expected
            and hmac.compare_digest(params.get("hub.verify_token", "").encode(), expected.encode())
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        return error(403, "VERIFY_TOKEN_MISMATCH", "verification failed")

    async def whatsapp_webhook(self, request: HttpRequest) -> Response:
        secret = self.settings.whatsapp_app_secret.get_secret_value()
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
        for value in values:
            await self._whatsapp_value(value)
        return JSONResponse({"received": True})

    def _whatsapp_workspace(self, phone_number_id: str) -> str:
        spec = self.settings.whatsapp_workspaces
        for item in (part.strip() for part in spec.split(",")):
            number, sep, workspace = item.partition(":")
            if sep and number == phone_number_id:
                return workspace
            if not sep and item:
                return item
        return ""

    async def _whatsapp_value(self, value: dict[str, Any]) -> None:
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
                await self.peers.notifier.IngestWhatsAppStatus(
                    npb.IngestWhatsAppStatusRequest(statuses=updates), timeout=self.peers.timeout()
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("whatsapp statuses not applied", extra={"code": failure.code().name})
        workspace_id = self._whatsapp_workspace(
            str(value.get("metadata", {}).get("phone_number_id", ""))
        )
        for message in value.get("messages", []):
            await self._whatsapp_message(workspace_id, message)

    async def _whatsapp_message(self, workspace_id: str, message: dict[str, Any]) -> None:
        number = "+" + re.sub(r"\D", "", str(message.get("from", "")))
        kind = message.get("type")
        if kind == "button":
            payload = str(message.get("button", {}).get("payload", ""))
            text = {
                "RETRY_PAYMENT": "retry now",
                "UPDATE_CARD": "update my card",
                "TALK_TO_HUMAN": "talk to a human",
            }.get(payload, str(message.get("button", {}).get("text", "")))
        elif kind == "interactive":
            reply = message.get("interactive", {}).get("button_reply", {})
            text = {
                "RETRY_PAYMENT": "retry now",
                "UPDATE_CARD": "update my card",
                "TALK_TO_HUMAN": "talk to a human",
            }.get(str(reply.get("id", "")), str(reply.get("title", "")))
        else:
            text = str(message.get("text", {}).get("body", ""))
        if not workspace_id or not text.strip():
            return
        code = whatsapp_proof.link_code(text) if kind == "text" else None
        if code is not None:
            # "LINK <code>": the proof that this number's holder asked to link it. Never a
            # chat turn (the code stays out of every transcript).
            await whatsapp_linking.prove(
                self.pool,
                self.settings,
                self.peers,
                workspace_id=workspace_id,
                number=number,
                code=code,
                provider_message_id=str(message.get("id", "")),
                now=datetime.now(UTC),
            )
            return
        async with self.pool.acquire() as connection:
            # Only a proven link: a number someone merely named is not their channel.
            link = await storage.find_whatsapp_link(connection, workspace_id, number)
        visitor = VisitorIdentity()
        if link is not None:
            visitor = VisitorIdentity(
                user_id=link.user_id,
                email=link.email,
                user_hash=self.engine.open_whatsapp_credential(link),
            )
            try:
                await self.peers.notifier.RecordInboundWhatsApp(
                    npb.RecordInboundWhatsAppRequest(
                        workspace_id=workspace_id,
                        contact_id=link.contact_id,
                        whatsapp_number=number,
                        received_at=timestamp_pb2.Timestamp(
                            seconds=int(message.get("timestamp", 0) or time.time())
                        ),
                        provider_message_id=str(message.get("id", "")),
                    ),
                    timeout=self.peers.timeout(),
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("inbound whatsapp not recorded", extra={"code": failure.code().name})
        reply = await self.answer(
            Request(
                workspace_id=workspace_id,
                # One conversation per contact and number: a number that moved to another
                # contact (by proof) does not continue the earlier contact's conversation.
                conversation_id=(
                    f"wa:{number}:{link.contact_id}" if link is not None else f"wa:{number}"
                )[:128],
                visitor=visitor,
                text=text[: self.settings.max_text_chars],
                channel="whatsapp",
            )
        )
        if isinstance(reply, Reply) and link is not None:
            try:
                await self.peers.notifier.Send(
                    npb.SendRequest(
                        workspace_id=workspace_id,
                        recipient=npb.Recipient(
                            contact_id=link.contact_id, whatsapp_number=number, email=link.email
                        ),
                        template=npb.TEMPLATE_CHAT_REPLY,
                        channel=npb.CHANNEL_WHATSAPP,
                        variables={"text": reply.text},
                        dedup_key=f"edge:wa-reply:{message.get('id', '')}",
                    ),
                    timeout=self.peers.timeout(),
                )
            except grpc.aio.AioRpcError as failure:
                logger.warning("whatsapp reply not queued", extra={"code": failure.code().name})

    # ----- health -----

    async def healthz(self, request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: HttpRequest) -> Response:
        states = {name: state.name.lower() for name, state in self.peers.channel_states().items()}
        ready = (
            not self.draining and self.database_ok and all(s != "shutdown" for s in states.values())
        )
        body = {
            "ready": ready,
            "database": self.database_ok,
            "draining": self.draining,
            "dependencies": states,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(self, request: HttpRequest) -> Response:
        return Response(
            prometheus_client.generate_latest(_REGISTRY),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )


def _timed(
    route: str, handler: Callable[[HttpRequest], Awaitable[Response]]
) -> Callable[[HttpRequest], Awaitable[Response]]:
    async def run(request: HttpRequest) -> Response:
        started = time.perf_counter()
        with tracer.start_as_current_span(
            f"HTTP {request.method} {route}", kind=trace.SpanKind.SERVER
        ):
            response = await handler(request)
        _REQUESTS.labels(route, str(response.status_code)).inc()
        _DURATION.labels(route).observe(time.perf_counter() - started)
        return response

    return run


async def _http_error(request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
    return error(exc.status_code, codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail))


def build_app(
    edge: Edge, mcp_app: ASGIApp | None, more_routes: list[Route] | None = None
) -> ASGIApp:
    """The ASGI application."""
    routes: list[Route | Mount] = [
        *[Route(r.path, _timed(r.path, r.endpoint), methods=r.methods) for r in more_routes or []],
        Route("/v1/chat/turns", _timed("/v1/chat/turns", edge.chat_turn), methods=["POST"]),
        Route("/v1/tools", _timed("/v1/tools", edge.list_tools), methods=["GET"]),
        Route(
            "/v1/tools/{name}", _timed("/v1/tools/{name}", edge.call_tool_json), methods=["POST"]
        ),
        Route(
            "/api/stripe/webhooks/{workspace_id}",
            _timed("/api/stripe/webhooks", edge.stripe_webhook),
            methods=["POST"],
        ),
        Route(
            "/api/whatsapp/webhook",
            _timed("/api/whatsapp/webhook", edge.whatsapp_verify),
            methods=["GET"],
        ),
        Route(
            "/api/whatsapp/webhook",
            _timed("/api/whatsapp/webhook", edge.whatsapp_webhook),
            methods=["POST"],
        ),
        Route("/healthz", edge.healthz, methods=["GET"]),
        Route("/readyz", edge.readyz, methods=["GET"]),
        Route("/metrics", edge.metrics, methods=["GET"]),
    ]
    if mcp_app is not None:
        routes.append(Route("/mcp", endpoint=AddressLimited(JsonErrorBodies(mcp_app), edge)))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    return BodyLimit(app, edge.settings.max_body_bytes)
