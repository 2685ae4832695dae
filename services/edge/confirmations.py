"""Where the person, and only the person, confirms a quote outside a typed "yes".

- ``POST /v1/confirmations``: the chat UI's confirm button. It carries the visitor's own proof
  (user_hash or token, as a chat turn does) and the quote's id and terms hash; it is never a
  tool, so a model cannot call it.
- ``GET``/``POST /v1/confirm/{token}``: the confirmation page an MCP client opens for the
  person (URL elicitation). The token is the page's only credential: 32 random bytes, shown
  to the person by their MCP client and never to the model, stored only as its SHA-256, and
  good for one pending quote until it expires. The page records the person's answer; the
  tool call the client retries afterwards runs exactly the confirmed quote with the
  visitor's proof it carries.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edge import api_models, storage
from edge.confirming import PAGE_CHANNEL
from edge.domain import proposals
from edge.domain.intents import Intent, Parsed
from edge.domain.proposals import ProposalState
from edge.http_api import Edge, identity_of
from edge.http_middleware import error
from edge.turn import QuoteAnswer, Request

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
# The page must not be framed (clickjacking a "Confirm"), cached, or leak its address.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _token_sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Confirmations:
    """The confirm endpoint and the confirmation page, bound to the edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    # ----- the chat UI's confirm button -----

    async def confirm(self, request: HttpRequest) -> Response:
        """``POST /v1/confirmations``: the person's answer to one quote, with their proof."""
        if not await self._edge.address_allowed(request):
            return error(429, "RATE_LIMITED", "too many requests from this address")
        body = await self._edge.json_body(request)
        if isinstance(body, JSONResponse):
            return body
        given = api_models.check(api_models.ConfirmationRequest, body)
        if not isinstance(given, dict) and not identity_of(given.visitor).presented:
            given = {"visitor": "the visitor's own proof (user_hash or token) is required"}
        if isinstance(given, dict):
            return error(400, "INVALID_ARGUMENT", "invalid confirmation", given)
        confirm = given.answer == "confirm"
        reply = await self._edge.answer(
            Request(
                workspace_id=given.workspace_id,
                conversation_id=given.conversation_id,
                visitor=identity_of(given.visitor),
                text=f"[{given.answer} quote {given.quote_id}]",
                channel="chat",
                parsed=Parsed(Intent.YES if confirm else Intent.NO),
                quote_answer=QuoteAnswer(given.quote_id, given.terms_hash, confirm),
            )
        )
        if isinstance(reply, JSONResponse):
            return reply
        return JSONResponse(api_models.confirmation_reply(reply))

    # ----- the confirmation page (MCP URL elicitation) -----

    async def open_page(self, workspace_id: str, conversation_id: str, quote_id: str) -> str:
        """A fresh page token for a pending money quote; "" when there is none."""
        token = secrets.token_urlsafe(32)
        async with self._edge.pool.acquire() as connection:
            opened = await storage.set_confirm_token(
                connection, workspace_id, conversation_id, quote_id, _token_sha256(token)
            )
        return token if opened else ""

    async def page(self, request: HttpRequest) -> Response:
        """``GET /v1/confirm/{token}``: the quote's terms and two buttons."""
        token = request.path_params["token"]
        if not _TOKEN.match(token):
            return _page("This confirmation link is not valid.", status=404)
        async with self._edge.pool.acquire() as connection:
            proposal = await storage.proposal_by_confirm_token(connection, _token_sha256(token))
        problem = _page_problem(proposal)
        if problem or proposal is None:
            return _page(problem or "This confirmation link is not valid.", status=404)
        summary = html.escape(proposal.summary)
        expires = html.escape(f"{proposal.expires_at:%Y-%m-%d %H:%M} UTC")
        return _page(
            f"<p>{summary}</p><p>This offer stands until {expires}.</p>"
            '<form method="post">'
            '<button type="submit" name="answer" value="confirm">Confirm</button> '
            '<button type="submit" name="answer" value="decline">Decline</button>'
            "</form>",
            raw=True,
        )

    async def page_answer(self, request: HttpRequest) -> Response:
        """``POST /v1/confirm/{token}``: records the person's answer (the action itself runs
        when their assistant retries the tool call, with the visitor's proof it carries)."""
        token = request.path_params["token"]
        if not _TOKEN.match(token):
            return _page("This confirmation link is not valid.", status=404)
        form = await request.form()
        answer = form.get("answer")
        if answer not in ("confirm", "decline"):
            return _page("Choose Confirm or Decline.", status=400)
        async with self._edge.pool.acquire() as connection, connection.transaction():
            proposal = await storage.proposal_by_confirm_token(connection, _token_sha256(token))
            problem = _page_problem(proposal)
            if problem or proposal is None:
                return _page(problem or "This confirmation link is not valid.", status=404)
            if answer == "decline":
                await storage.set_proposal_state(connection, proposal, ProposalState.DECLINED)
                return _page("Declined: nothing was changed. You can close this page.")
            await storage.mark_person_confirmed(connection, proposal, PAGE_CHANNEL)
        return _page(
            "Confirmed. Return to your assistant: it finishes this for you and tells you the "
            "outcome. You can close this page."
        )

    def routes(self) -> list[Route]:
        """The routes this module serves."""
        return [
            Route("/v1/confirmations", self.confirm, methods=["POST"]),
            Route("/v1/confirm/{token}", self.page, methods=["GET"]),
            Route("/v1/confirm/{token}", self.page_answer, methods=["POST"]),
        ]


def _page_problem(proposal: proposals.Proposal | None) -> str:
    """Why the page cannot take an answer, or "" when it can."""
    if proposal is None:
        return "This confirmation link is not valid."
    if proposal.state is not ProposalState.PENDING:
        return "This offer was already answered or replaced; nothing more to do here."
    if proposal.person_confirmed_at is not None:
        return "You already confirmed this; return to your assistant."
    if datetime.now(UTC) >= proposal.expires_at:
        return "This offer expired, so nothing was changed. Ask your assistant again."
    return ""


def _page(body: str, *, status: int = 200, raw: bool = False) -> Response:
    content: Any = body if raw else f"<p>{html.escape(body)}</p>"
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width">'
        "<title>Confirm a billing action</title></head>"
        f"<body><h1>Confirm a billing action</h1>{content}</body></html>",
        status_code=status,
        headers=_PAGE_HEADERS,
    )
