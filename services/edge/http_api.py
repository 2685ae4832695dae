"""The edge's HTTP surface: chat turns, tools (JSON and MCP), Stripe webhooks, health and
metrics; the WhatsApp webhook is ``whatsapp_webhook``'s, the confirmations
``confirmations``'. Bad input is a 4xx with ``{"error": {"code", "message", "fields"?}}``,
never a 5xx."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import prometheus_client
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Scope

from askvault.billing.v1 import billing_pb2 as bpb
from edge import api_models, metrics, openapi, ratelimit, tools, turn_keys
from edge.http_middleware import (
    UNAVAILABLE_RETRY_AFTER_SECONDS,
    AddressLimited,
    AdmissionLimit,
    BodyLimit,
    JsonErrorBodies,
    error,
    overloaded,
)
from edge.peers import Peers, error_reason, is_overloaded, is_unavailable
from edge.pipeline import Engine
from edge.settings import EdgeSettings
from edge.turn import ConversationNotOwned, Reply, Request, VisitorIdentity
from runtime import http_server
from runtime.database import UNAVAILABLE_ERRORS
from runtime.health import DATABASE, SHUTTING_DOWN, Health

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("askvault.edge")

# Anchored at the very end (``$`` would let a trailing newline through), as the models are.
_ID = re.compile(api_models.ID_REGEX.removesuffix("$") + r"\Z")
# What workspace, conversation and quote ids look like.
ID_PATTERN = _ID


def identity_of(visitor: api_models.Visitor) -> VisitorIdentity:
    """The engine's visitor from the request's."""
    return VisitorIdentity(
        user_id=visitor.user_id,
        email=visitor.email,
        user_hash=visitor.user_hash,
        token=visitor.token,
    )


class Edge:
    """The handlers, bound to the engine and settings."""

    def __init__(self, settings: EdgeSettings, engine: Engine, peers: Peers, pool: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.peers = peers
        self.pool = pool
        # Components as the gRPC services have them (runtime.health): the database, and
        # shutting_down, which the drain flips before anything else.
        self.health = Health(())
        # Before verification nothing but the client's address is known for sure; the limits
        # per verified contact and per customer are the engine's (ratelimit.TurnLimits).
        self.address_limit = ratelimit.RateLimiter(
            pool, "address", settings.address_requests_per_minute
        )
        self.trusted_proxies = ratelimit.trusted_networks(settings.trusted_proxies)
        self.turn_keys = turn_keys.TurnKeys(pool, peers)

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

    async def address_allowed(self, request: HttpRequest) -> bool:
        """Whether the client's address is within its request budget (counting the request)."""
        return await self.scope_allowed(request.scope)

    async def scope_allowed(self, scope: Scope) -> bool:
        """Whether the ASGI request's client address is within its request budget. With the
        database unreachable the request passes uncounted: what needs the database then
        answers 503 on its own, and what does not (the tool list) still answers."""
        try:
            return await self.address_limit.allow(self.client_address(scope))
        except UNAVAILABLE_ERRORS as failure:
            logger.warning(
                "address limit not counted: database unavailable",
                extra={"error": type(failure).__name__},
            )
            return True

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
                if is_overloaded(failure):
                    # Refused before it claimed anything: the same request later acts once.
                    return overloaded(self.settings.overload_retry_after_seconds, "dependency")
                if is_unavailable(failure):
                    return error(
                        503, "DEPENDENCY_UNAVAILABLE", "a service is unavailable; try again shortly"
                    )
                return error(502, "DEPENDENCY_ERROR", "a service refused the request")
            span.set_attribute("askvault.intent", reply.intent)
        metrics.TURNS.add(1, {"intent": reply.intent, "status": reply.status})
        return reply

    # ----- chat -----

    async def chat_turn(self, request: HttpRequest) -> Response:
        if not await self.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        body = await self.json_body(request)
        if isinstance(body, JSONResponse):
            return body
        turn = api_models.check(api_models.ChatTurnRequest, body)
        text = body.get("text")
        if isinstance(text, str) and len(text) > self.settings.max_text_chars and text.strip():
            turn = turn if isinstance(turn, dict) else {}
            turn["text"] = f"at most {self.settings.max_text_chars} characters"
        key = request.headers.get(turn_keys.HEADER)
        if key is not None and not turn_keys.KEY_PATTERN.match(key):
            turn = turn if isinstance(turn, dict) else {}
            turn["Idempotency-Key"] = "1 to 200 printable characters, no spaces"
        if isinstance(turn, dict):
            return error(400, "INVALID_ARGUMENT", "invalid chat turn", turn)
        visitor_turn = Request(
            workspace_id=turn.workspace_id,
            conversation_id=turn.conversation_id,
            visitor=identity_of(turn.visitor),
            text=turn.text,
        )
        if key is not None:
            return await self.turn_keys.run(visitor_turn, key, lambda: self.answer(visitor_turn))
        answer = await self.answer(visitor_turn)
        if isinstance(answer, JSONResponse):
            return answer
        return JSONResponse(api_models.chat_turn_reply(answer))

    # ----- tools -----

    async def list_tools(self, request: HttpRequest) -> Response:
        if not await self.address_allowed(request):
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
        if not await self.address_allowed(request):
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
        terms = await self.engine.deps.terms.get(workspace_id)
        now = datetime.now(UTC).astimezone(ZoneInfo(terms.time_zone))
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
            result["next_step"] = tools.NEXT_STEP_CONFIRM
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
            if is_overloaded(failure):
                return overloaded(self.settings.overload_retry_after_seconds, "dependency")
            return error(503, reason or "UNAVAILABLE", "the event could not be stored; retry")
        return JSONResponse(
            {"received": True, "event_id": stored.event_id, "duplicate": stored.duplicate}
        )

    # ----- health -----

    async def healthz(self, request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: HttpRequest) -> Response:
        states = {name: state.name.lower() for name, state in self.peers.channel_states().items()}
        components = self.health.components()
        ready = self.health.serving and all(s != "shutdown" for s in states.values())
        body = {
            "ready": ready,
            "database": components.get(DATABASE, False),
            "draining": not components[SHUTTING_DOWN],
            "dependencies": states,
        }
        response = JSONResponse(body, status_code=200 if ready else 503)
        if not ready:
            # Like every 503 of the edge: a client (not the kubelet) reading it knows when.
            response.headers["retry-after"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
        return response

    async def openapi(self, request: HttpRequest) -> Response:
        return JSONResponse(openapi.document())

    async def metrics(self, request: HttpRequest) -> Response:
        """The process's OpenTelemetry metrics as Prometheus text: the exporter's reader
        (``runtime.telemetry``) is a collector of prometheus_client's default registry."""
        return Response(
            prometheus_client.generate_latest(prometheus_client.REGISTRY),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )


def _timed(
    route: str, handler: Callable[[HttpRequest], Awaitable[Response]]
) -> Callable[[HttpRequest], Awaitable[Response]]:
    """Counts and times the route's requests (the span is the ASGI middleware's)."""

    async def run(request: HttpRequest) -> Response:
        started = time.perf_counter()
        response = await handler(request)
        metrics.HTTP_REQUESTS.add(1, {"route": route, "status": str(response.status_code)})
        metrics.HTTP_DURATION.record(time.perf_counter() - started, {"route": route})
        return response

    return run


async def _http_error(request: HttpRequest, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
    return error(exc.status_code, codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail))


def build_app(
    edge: Edge, mcp_app: ASGIApp | None, more_routes: list[Route] | None = None
) -> Starlette:
    """The ASGI application, its requests traced (``runtime.http_server.trace_requests``)."""
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
        Route("/healthz", edge.healthz, methods=["GET"]),
        Route("/readyz", edge.readyz, methods=["GET"]),
        Route("/metrics", edge.metrics, methods=["GET"]),
        Route("/openapi.json", edge.openapi, methods=["GET"]),
    ]
    if mcp_app is not None:
        routes.append(
            Route("/mcp", endpoint=AddressLimited(JsonErrorBodies(mcp_app), edge.scope_allowed))
        )
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        middleware=[Middleware(BodyLimit, max_bytes=edge.settings.max_body_bytes)],
    )
    # Added after BodyLimit, so outside it: a body refused by BodyLimit is in the trace too.
    http_server.trace_requests(app)
    # Added last, so outermost (only Starlette's catch-all for a crash is outside it): past
    # saturation the excess is refused before its body is read and before a span, a route
    # match or a metric is made for it, so a refusal costs the saturated process next to
    # nothing and the requests it serves keep the CPU. Sheds are counted
    # (askvault_edge_http_shed_total), not traced.
    app.add_middleware(
        AdmissionLimit,
        max_in_flight=edge.settings.http_max_in_flight,
        max_queued=edge.settings.http_max_queued,
        queue_wait_seconds=edge.settings.http_queue_wait_seconds,
        retry_after_seconds=edge.settings.overload_retry_after_seconds,
        exempt=http_server.UNTRACED_PATHS,
    )
    return app
