"""The WhatsApp Cloud API: template messages (with quick-reply buttons) and free-form text.

POST {base}/{version}/{phone_number_id}/messages with a bearer token; the answer carries
the message's wamid, or an error object whose ``code`` says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from notifier.domain import templates
from notifier.domain.outbox import DeliveryFailure, FailureKind, classify_whatsapp


@dataclass(frozen=True)
class WhatsAppConfig:
    """Where the API is and how to call it."""

    base_url: str
    access_token: str
    api_version: str
    template_language: str
    timeout_seconds: float


def payload(to: str, content: templates.WhatsAppContent, language: str) -> dict[str, Any]:
    """The request body of one message."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    }
    if not content.is_template:
        body["type"] = "text"
        body["text"] = {"preview_url": False, "body": content.text}
        return body
    components: list[dict[str, Any]] = []
    if content.body_params:
        components.append(
            {
                "type": "body",
                "parameters": [{"type": "text", "text": value} for value in content.body_params],
            }
        )
    for index, button in enumerate(content.buttons):
        components.append(
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": str(index),
                "parameters": [{"type": "payload", "payload": button.payload}],
            }
        )
    body["type"] = "template"
    body["template"] = {
        "name": content.template_name,
        "language": {"code": language},
        "components": components,
    }
    return body


async def send(
    session: aiohttp.ClientSession,
    config: WhatsAppConfig,
    phone_number_id: str,
    to: str,
    content: templates.WhatsAppContent,
) -> str:
    """Sends one message and returns its wamid; raises DeliveryFailure."""
    url = f"{config.base_url.rstrip('/')}/{config.api_version}/{phone_number_id}/messages"
    try:
        async with session.post(
            url,
            json=payload(to, content, config.template_language),
            headers={"Authorization": f"Bearer {config.access_token}"},
            timeout=aiohttp.ClientTimeout(total=config.timeout_seconds),
        ) as response:
            try:
                answer = await response.json(content_type=None)
            except ValueError:
                answer = None
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailure(FailureKind.TRANSIENT, f"WhatsApp {type(error).__name__}") from None
    if status < 300 and isinstance(answer, dict):
        messages = answer.get("messages") or []
        if messages and isinstance(messages[0], dict) and messages[0].get("id"):
            return str(messages[0]["id"])
        raise DeliveryFailure(FailureKind.TRANSIENT, "WhatsApp answered without a message id")
    details = answer.get("error", {}) if isinstance(answer, dict) else {}
    code = int(details.get("code", 0) or 0) if isinstance(details, dict) else 0
    title = str(details.get("message", "")) if isinstance(details, dict) else ""
    raise DeliveryFailure(
        classify_whatsapp(status, code), f"WhatsApp HTTP {status} code {code}: {title}".rstrip(": ")
    )
