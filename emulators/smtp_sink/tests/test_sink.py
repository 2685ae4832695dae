"""The sink's SMTP side and HTTP API."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest

from smtp_sink import app


def _mail(message_id: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Message-ID"] = message_id
    mail["From"] = "a@example.com"
    mail["To"] = "b@example.com"
    mail["Subject"] = "Hello"
    mail.set_content("text body")
    mail.add_alternative("<p>html body</p>", subtype="html")
    mail.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="i.pdf")
    return mail


@pytest.mark.integration
async def test_http_api_lists_waits_counts_duplicates_and_injects_faults() -> None:
    sink = await app.start()
    try:
        async with aiohttp.ClientSession(sink.http_url) as http:
            waiting = asyncio.create_task(http.get("/messages/wait?count=2&timeout=5"))
            for message_id in ("<1@x>", "<1@x>"):
                await aiosmtplib.send(
                    _mail(message_id), hostname=sink.host, port=sink.smtp_port, start_tls=False
                )
            async with await waiting as response:
                assert response.status == 200
                messages = (await response.json())["messages"]
            assert messages[0]["text"].strip() == "text body"
            assert messages[0]["attachments"][0]["filename"] == "i.pdf"
            async with http.get("/stats") as response:
                assert await response.json() == {
                    "received": 2,
                    "distinct_message_ids": 1,
                    "duplicates": 1,
                }
            async with http.post("/faults", json={"code": 452, "stage": "rcpt"}) as response:
                assert response.status == 200
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await aiosmtplib.send(
                    _mail("<2@x>"), hostname=sink.host, port=sink.smtp_port, start_tls=False
                )
            async with http.delete("/messages") as response:
                assert response.status == 200
            async with http.get("/messages/wait?count=1&timeout=0.1") as response:
                assert response.status == 408
    finally:
        await sink.close()


@pytest.mark.integration
async def test_a_message_refused_at_data_is_listed_as_refused_not_received() -> None:
    sink = await app.start()
    try:
        async with aiohttp.ClientSession(sink.http_url) as http:
            async with http.post("/faults", json={"code": 550, "stage": "data"}) as response:
                assert response.status == 200
            with pytest.raises(aiosmtplib.SMTPDataError):
                await aiosmtplib.send(
                    _mail("<3@x>"), hostname=sink.host, port=sink.smtp_port, start_tls=False
                )
            await aiosmtplib.send(
                _mail("<4@x>"), hostname=sink.host, port=sink.smtp_port, start_tls=False
            )
            async with http.get("/refused") as response:
                refused = (await response.json())["refused"]
            assert refused == [{"message_id": "<3@x>", "code": 550, "rcpt_tos": ["b@example.com"]}]
            async with http.get("/messages") as response:
                received = (await response.json())["messages"]
            assert [m["message_id"] for m in received] == ["<4@x>"]
    finally:
        await sink.close()
