"""Chat turns sent with an ``Idempotency-Key`` header: a client that retries a turn after a
network blip gets the first answer instead of a second run of the turn (a second "yes" would
find nothing waiting, or worse, act again).

The key is the workspace's; the request's fingerprint is what the visitor claims (the
conversation, the claimed identity and the text), not a credential the site may issue afresh
for the retry (a new JWT, a new assertion from identity). The first turn's verified contact
is kept with its answer, and a replay is verified again and must be that contact: the
fingerprint names a claimed identity, which proves nothing, so a stranger who learns the key
and repeats the text with the user id gets IDEMPOTENCY_MISMATCH, not the answer. Only answers
are kept: a turn answered with an error keeps nothing, and its retry runs again.

WhatsApp's inbound messages are keyed the same way, by ``whatsapp_message_key``: a message
WhatsApp delivers again (the edge did not answer its webhook 2xx) gets the first answer.

The answer is saved after the turn, not in the turn's own transactions (a turn's changes span
services: the refund is Stripe's, the proposal the edge's). An edge that dies between the
two leaves a claim without an answer: its retries are told IN_PROGRESS until the claim is
``CLAIM_TAKEOVER_SECONDS`` old, and then the turn runs again (what it does acts once, on its
own idempotency keys, but its answer may differ: "nothing to confirm" for a second "yes").
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from starlette.responses import JSONResponse

from edge import api_models
from edge.http_middleware import error
from edge.peers import Peers
from edge.pipeline import verify
from edge.turn import Reply, Request
from runtime.database import UNAVAILABLE_ERRORS, Connection, Queries

logger = logging.getLogger(__name__)

queries = Queries("edge")

HEADER = "idempotency-key"
# Printable ASCII without spaces, as Stripe and the IETF draft use them (UUIDs and the like).
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
# Seconds after which a claim without an answer is a dead turn's, and a retry takes it over
# (a live turn answers well within it: every call it makes has a deadline of seconds).
CLAIM_TAKEOVER_SECONDS = 60.0
# How long an answer is kept for retries, and how often a replica sweeps older ones.
KEEP_SECONDS = 86_400.0
SWEEP_INTERVAL_SECONDS = 600.0


def fingerprint(request: Request) -> bytes:
    """SHA-256 of the turn as the visitor claims it: conversation, claimed identity, text."""
    claimed = [request.conversation_id, request.visitor.key, request.visitor.email, request.text]
    return hashlib.sha256(json.dumps(claimed).encode()).digest()


def whatsapp_message_key(number: str, message_id: str) -> str:
    """The key of an inbound WhatsApp message: its number and WhatsApp's message id (unique
    per message, repeated on every redelivery). It has spaces, which ``KEY_PATTERN`` refuses
    in a header, so no web client can claim or read a WhatsApp message's answer."""
    return f"whatsapp {number} {message_id}"


def mismatch() -> JSONResponse:
    """422 IDEMPOTENCY_MISMATCH: the key was used for another turn (or by someone else)."""
    return error(422, "IDEMPOTENCY_MISMATCH", "this Idempotency-Key was used for another chat turn")


@dataclass(frozen=True)
class _Stored:
    fingerprint: bytes
    contact_id: str
    answer: dict[str, Any] | None


class TurnKeys:
    """Runs a keyed chat turn once and replays its answer to the retries."""

    def __init__(self, pool: asyncpg.Pool, peers: Peers) -> None:
        self._pool = pool
        self._peers = peers
        self._last_sweep = time.monotonic()

    async def run(
        self, request: Request, key: str, answer: Callable[[], Awaitable[Reply | JSONResponse]]
    ) -> JSONResponse:
        """The turn's answer: the first one for a retry of it, or ``answer()`` run now."""
        answered = await self.once(request, key, answer)
        return answered if isinstance(answered, JSONResponse) else JSONResponse(answered)

    async def once(
        self, request: Request, key: str, answer: Callable[[], Awaitable[Reply | JSONResponse]]
    ) -> dict[str, Any] | JSONResponse:
        """The turn's JSON answer (``Reply.as_json``): the first one for a retry of it, or
        ``answer()`` run now; an error response when it ran with an error, is still running
        (409 IDEMPOTENCY_IN_PROGRESS), or the key was another turn's (422)."""
        wanted = fingerprint(request)
        try:
            async with self._pool.acquire() as connection:
                await self._sweep(connection)
                claimed = await connection.fetchval(
                    queries.claim_chat_turn_key,
                    request.workspace_id,
                    key,
                    wanted,
                    CLAIM_TAKEOVER_SECONDS,
                )
                stored = None if claimed else await self._stored(connection, request, key)
        except UNAVAILABLE_ERRORS as failure:
            # Nothing ran: the retry starts afresh.
            logger.warning("turn key not claimed", extra={"error": type(failure).__name__})
            return error(503, "DATABASE_UNAVAILABLE", "try again shortly")
        if not claimed:
            return await self._replay(request, wanted, stored)
        try:
            reply = await answer()
        except BaseException:
            await self._release(request, key)
            raise
        if isinstance(reply, JSONResponse):
            await self._release(request, key)
            return reply
        body = api_models.chat_turn_reply(reply)
        try:
            async with self._pool.acquire() as connection:
                await connection.execute(
                    queries.save_chat_turn_answer,
                    request.workspace_id,
                    key,
                    json.dumps(body),
                    reply.contact_id,
                )
        except UNAVAILABLE_ERRORS as failure:
            # The turn ran: its answer still goes out (the bound of a dead edge applies to
            # a retry of it, see the module's docstring).
            logger.warning("turn answer not kept", extra={"error": type(failure).__name__})
        return body

    async def _replay(
        self, request: Request, wanted: bytes, stored: _Stored | None
    ) -> dict[str, Any] | JSONResponse:
        if stored is not None and stored.fingerprint != wanted:
            return mismatch()
        if stored is None or stored.answer is None:
            response = error(
                409, "IDEMPOTENCY_IN_PROGRESS", "a turn with this Idempotency-Key is running"
            )
            response.headers["Retry-After"] = "1"
            return response
        try:
            verified = await verify(self._peers, request)
        except grpc.aio.AioRpcError:
            return error(
                503, "DEPENDENCY_UNAVAILABLE", "a service is unavailable; try again shortly"
            )
        if (verified[0].contact_id if verified is not None else "") != stored.contact_id:
            return mismatch()
        return stored.answer

    async def _stored(self, connection: Connection, request: Request, key: str) -> _Stored | None:
        row = await connection.fetchrow(queries.get_chat_turn_key, request.workspace_id, key)
        if row is None:
            return None
        answer = row["answer"]
        return _Stored(
            bytes(row["fingerprint"]),
            row["contact_id"],
            json.loads(answer) if isinstance(answer, str) else answer,
        )

    async def _release(self, request: Request, key: str) -> None:
        try:
            async with self._pool.acquire() as connection:
                await connection.execute(queries.release_chat_turn_key, request.workspace_id, key)
        except UNAVAILABLE_ERRORS as failure:
            # Kept claimed: a retry is told IN_PROGRESS until the claim is taken over.
            logger.warning("turn key not released", extra={"error": type(failure).__name__})

    async def _sweep(self, connection: Connection) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL_SECONDS:
            return
        self._last_sweep = time.monotonic()
        await connection.execute(queries.delete_old_chat_turn_keys, KEEP_SECONDS)
