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
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import grpc
from starlette.responses import JSONResponse

from edge.http_middleware import error
from edge.peers import Peers
from edge.pipeline import verify
from edge.turn import Reply, Request
from runtime.database import Connection, Queries

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


def mismatch() -> JSONResponse:
    """422 IDEMPOTENCY_MISMATCH: the key was used for another turn (or by someone else)."""
    return error(422, "IDEMPOTENCY_MISMATCH", "this Idempotency-Key was used for another chat turn")


@dataclass(frozen=True)
class _Stored:
    fingerprint: bytes
    contact_id: str
    answer: dict[str, object] | None


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
        wanted = fingerprint(request)
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
        body = reply.as_json()
        async with self._pool.acquire() as connection:
            await connection.execute(
                queries.save_chat_turn_answer,
                request.workspace_id,
                key,
                json.dumps(body),
                reply.contact_id,
            )
        return JSONResponse(body)

    async def _replay(
        self, request: Request, wanted: bytes, stored: _Stored | None
    ) -> JSONResponse:
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
        return JSONResponse(stored.answer)

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
        async with self._pool.acquire() as connection:
            await connection.execute(queries.release_chat_turn_key, request.workspace_id, key)

    async def _sweep(self, connection: Connection) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL_SECONDS:
            return
        self._last_sweep = time.monotonic()
        await connection.execute(queries.delete_old_chat_turn_keys, KEEP_SECONDS)
