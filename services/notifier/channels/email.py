"""Email over SMTP (aiosmtplib): text and HTML parts, attachments fetched at send time.

The Message-ID is derived from the message id (``<msg_...@domain>``), so every attempt of
one message carries the same id: a copy the SMTP server accepted from a worker that died
before recording it can be recognised as a duplicate by the sink (and by mail clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import aiohttp
import aiosmtplib

from notifier.domain import templates
from notifier.domain.outbox import DeliveryFailure, FailureKind, classify_http, classify_smtp


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect."""

    host: str
    port: int
    starttls: bool
    use_tls: bool
    username: str
    password: str
    timeout_seconds: float


@dataclass(frozen=True)
class FetchedAttachment:
    """An attachment's content."""

    filename: str
    content_type: str
    content: bytes


def message_id_header(message_id: str, domain: str) -> str:
    """The deterministic Message-ID header of a message."""
    return f"<{message_id}@{domain}>"


def build(
    *,
    message_id_header_value: str,
    from_address: str,
    sender_name: str,
    reply_to: str,
    to: str,
    content: templates.Email,
    attachments: Sequence[FetchedAttachment] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    """A MIME message: text and HTML alternatives, then the attachments."""
    mail = EmailMessage()
    mail["Message-ID"] = message_id_header_value
    mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    mail["From"] = email.utils.formataddr((sender_name, from_address))
    mail["To"] = to
    if reply_to:
        mail["Reply-To"] = reply_to
    mail["Subject"] = content.subject
    for name, value in extra_headers:
        mail[name] = value
    mail.set_content(content.text)
    mail.add_alternative(content.html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition(
            "/"
        )
        mail.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return mail


async def fetch_attachment(
    session: aiohttp.ClientSession,
    url: str,
    filename: str,
    content_type: str,
    *,
    max_bytes: int,
    timeout_seconds: float,
) -> FetchedAttachment:
    """Downloads one attachment; a 5xx or a timeout is worth retrying, a 404 is not."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_seconds)
        ) as response:
            if response.status >= 400:
                raise DeliveryFailure(
                    classify_http(response.status),
                    f"attachment {filename}: HTTP {response.status}",
                )
            content = await response.content.read(max_bytes + 1)
            if len(content) > max_bytes:
                raise DeliveryFailure(
                    FailureKind.PERMANENT, f"attachment {filename}: larger than {max_bytes} bytes"
                )
            return FetchedAttachment(
                filename, content_type or response.content_type or "application/pdf", content
            )
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailure(
            FailureKind.TRANSIENT, f"attachment {filename}: {type(error).__name__}"
        ) from None


class SmtpConnections:
    """Open SMTP connections kept between messages (connect, TLS and AUTH cost more than the
    message itself); at most ``size`` idle ones, a broken one is dropped, not reused."""

    def __init__(self, config: SmtpConfig, size: int) -> None:
        self.config = config
        self._size = size
        self._idle: list[aiosmtplib.SMTP] = []

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            use_tls=config.use_tls,
            start_tls=config.starttls,
            username=config.username or None,
            password=config.password or None,
            timeout=config.timeout_seconds,
        )
        await client.connect()
        return client

    async def send(self, mail: EmailMessage, sender: str, recipients: list[str]) -> None:
        """Sends on an idle connection (a fresh one if it turns out closed) or a new one."""
        while self._idle:
            client = self._idle.pop()
            try:
                await self._send_on(client, mail, sender, recipients)
                return
            except aiosmtplib.SMTPServerDisconnected:
                continue  # the server closed the idle connection: nothing was sent on it
        await self._send_on(await self._connect(), mail, sender, recipients)

    async def _send_on(
        self, client: aiosmtplib.SMTP, mail: EmailMessage, sender: str, recipients: list[str]
    ) -> None:
        try:
            await client.send_message(
                mail, sender=sender, recipients=recipients, timeout=self.config.timeout_seconds
            )
        except aiosmtplib.SMTPResponseException:
            # The server refused this message; the connection itself is still good once the
            # half-done transaction is reset.
            await self._keep(client, reset=True)
            raise
        except BaseException:
            client.close()
            raise
        await self._keep(client, reset=False)

    async def _keep(self, client: aiosmtplib.SMTP, *, reset: bool) -> None:
        if client.is_connected and len(self._idle) < self._size:
            with contextlib.suppress(aiosmtplib.SMTPException):
                if reset:
                    await client.rset()
                self._idle.append(client)
                return
        client.close()

    async def close(self) -> None:
        """Closes the idle connections."""
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await client.quit()


async def send(
    connections: SmtpConnections, mail: EmailMessage, sender: str, recipients: list[str]
) -> None:
    """Hands the message to the SMTP server; raises DeliveryFailure."""
    try:
        await connections.send(mail, sender, recipients)
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [refused.code for refused in error.recipients]
        raise DeliveryFailure(
            classify_smtp(min(codes, default=550)),
            "SMTP refused the recipient: " + "; ".join(str(r) for r in error.recipients),
        ) from None
    except aiosmtplib.SMTPAuthenticationError as error:
        # A configuration problem: retrying gives an operator time to fix it.
        raise DeliveryFailure(FailureKind.TRANSIENT, f"SMTP auth {error.code}") from None
    except aiosmtplib.SMTPResponseException as error:
        raise DeliveryFailure(
            classify_smtp(error.code), f"SMTP {error.code} {error.message}".strip()
        ) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError, asyncio.IncompleteReadError) as error:
        raise DeliveryFailure(
            FailureKind.TRANSIENT, f"SMTP {type(error).__name__}: {error}".rstrip(": ")
        ) from None
