"""The received messages, the queued faults and the SMTP handler that feeds them."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the sink received it."""

    sequence: int
    message_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    # Wall-clock time of receipt (time.time()), so that senders can measure latency.
    received_at: float
    text: str
    html: str
    attachments: tuple[dict[str, Any], ...]
    headers: dict[str, str]
    size: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the HTTP API."""
        return {
            "sequence": self.sequence,
            "message_id": self.message_id,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "subject": self.subject,
            "received_at": self.received_at,
            "text": self.text,
            "html": self.html,
            "attachments": list(self.attachments),
            "headers": self.headers,
            "size": self.size,
        }


@dataclass(frozen=True)
class RefusedMail:
    """A message the sink answered with a fault at DATA (its content was read): what a
    harness compares with the sender's record of what it gave up on."""

    message_id: str
    code: int
    rcpt_tos: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the HTTP API."""
        return {"message_id": self.message_id, "code": self.code, "rcpt_tos": list(self.rcpt_tos)}


@dataclass
class Fault:
    """A reply to give instead of accepting: at "rcpt" or at "data" (after the content)."""

    code: int
    message: str
    stage: str = "data"
    remaining: int = 1

    def reply(self) -> str:
        """The SMTP reply line."""
        return f"{self.code} {self.message}"


def _body(parsed: EmailMessage, subtype: str) -> str:
    part = parsed.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return ""
    content = part.get_content()
    return content if isinstance(content, str) else ""


def parse(sequence: int, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> ReceivedMail:
    """A received message with its parts decoded."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    attachments = tuple(
        {
            "filename": part.get_filename() or "",
            "content_type": part.get_content_type(),
            "size": len(part.get_payload(decode=True) or b""),
        }
        for part in parsed.iter_attachments()
        if isinstance(part, EmailMessage)
    )
    return ReceivedMail(
        sequence=sequence,
        message_id=str(parsed.get("Message-ID", "")).strip(),
        mail_from=mail_from,
        rcpt_tos=rcpt_tos,
        subject=str(parsed.get("Subject", "")),
        received_at=time.time(),
        text=_body(parsed, "plain"),
        html=_body(parsed, "html"),
        attachments=attachments,
        headers={key: str(value) for key, value in parsed.items()},
        size=len(raw),
    )


@dataclass
class MailStore:
    """Messages in arrival order (at most ``max_messages``; the oldest go first)."""

    max_messages: int = 100_000
    # Seconds to wait before answering DATA, to make the sink as slow as a real relay.
    delay_seconds: float = 0.0
    messages: deque[ReceivedMail] = field(default_factory=deque)
    faults: list[Fault] = field(default_factory=list)
    # Messages answered with a fault at DATA, in order (at most ``max_messages``).
    refused: deque[RefusedMail] = field(default_factory=deque)
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes) -> ReceivedMail:
        """Stores a message and wakes the waiters."""
        received = parse(next(self._sequence), mail_from, rcpt_tos, raw)
        self.messages.append(received)
        while len(self.messages) > self.max_messages:
            self.messages.popleft()
        self._arrived.set()
        return received

    def refuse(self, fault: Fault, rcpt_tos: tuple[str, ...], raw: bytes) -> None:
        """Remembers a message answered with ``fault`` at DATA, by its Message-ID."""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        message_id = str(parsed.get("Message-ID", "")).strip()
        self.refused.append(RefusedMail(message_id, fault.code, rcpt_tos))
        while len(self.refused) > self.max_messages:
            self.refused.popleft()

    def clear(self) -> None:
        """Forgets every message, refused ones too."""
        self.messages.clear()
        self.refused.clear()

    def select(self, to: str = "", message_id: str = "") -> list[ReceivedMail]:
        """Messages to an address and/or with a Message-ID."""
        return [
            m
            for m in self.messages
            if (not to or to in m.rcpt_tos) and (not message_id or m.message_id == message_id)
        ]

    async def wait_for(
        self, count: int, timeout_seconds: float, to: str = ""
    ) -> list[ReceivedMail]:
        """Waits until at least ``count`` messages (to ``to``) arrived; TimeoutError else."""
        async with asyncio.timeout(timeout_seconds):
            while True:
                found = self.select(to=to)
                if len(found) >= count:
                    return found
                self._arrived.clear()
                await self._arrived.wait()

    def stats(self) -> dict[str, int]:
        """Received, distinct Message-IDs and duplicates (same Message-ID more than once)."""
        distinct = len({m.message_id for m in self.messages})
        return {
            "received": len(self.messages),
            "distinct_message_ids": distinct,
            "duplicates": len(self.messages) - distinct,
        }

    def queue_fault(self, fault: Fault) -> None:
        """The next matching commands get this reply."""
        self.faults.append(fault)

    def take_fault(self, stage: str) -> Fault | None:
        """The next fault for this stage, used up by one."""
        for fault in self.faults:
            if fault.stage == stage and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault
        return None


class SinkHandler:
    """The aiosmtpd handler: replies with queued faults, else stores and accepts."""

    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self._store.take_fault("rcpt")
        if fault is not None:
            return fault.reply()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._store.delay_seconds:
            await asyncio.sleep(self._store.delay_seconds)
        fault = self._store.take_fault("data")
        content = envelope.original_content or envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        if fault is not None:
            self._store.refuse(fault, tuple(envelope.rcpt_tos), raw)
            return fault.reply()
        self._store.add(str(envelope.mail_from), tuple(envelope.rcpt_tos), raw)
        return "250 Message accepted for delivery"
