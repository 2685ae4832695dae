"""Hand-offs posted as JSON to a workspace's helpdesk webhook, signed per Standard Webhooks.

``webhook-id`` (and ``Idempotency-Key``, kept for helpdesks that read it) carry the message
id, so a helpdesk that sees the same hand-off twice (a retry after a lost answer) can keep
one. ``webhook-timestamp`` is the attempt's time and ``webhook-signature`` is
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with the workspace's secret
(``whsec_<base64>``), made by the ``standardwebhooks`` library that receivers verify with.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import standardwebhooks

from notifier.domain.outbox import DeliveryFailure, FailureKind, classify_http

WHSEC_PREFIX = "whsec_"
# Random bytes of a secret: at least the spec's 24, at most its 64.
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64


def secret_problem(secret: str) -> str:
    """Why ``secret`` is not a Standard Webhooks secret, or "" when it is one. The answer
    never repeats the secret."""
    if not secret.startswith(WHSEC_PREFIX):
        return f"must start with {WHSEC_PREFIX!r}"
    try:
        raw = base64.b64decode(secret.removeprefix(WHSEC_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {WHSEC_PREFIX}<base64>"
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        return f"must hold {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes"
    return ""


def signed_headers(secret: str, webhook_id: str, body: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    # Whole seconds: the header and the signed content must carry the same timestamp.
    at = datetime.fromtimestamp(int(now.timestamp()), UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(secret).sign(webhook_id, at, body),
    }


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    message_id: str,
    timeout_seconds: float,
    secret: str = "",
) -> None:
    """Posts the hand-off, signed when ``secret`` is given; raises DeliveryFailure."""
    # Serialized once: the bytes sent are the bytes signed.
    payload = json.dumps(body, separators=(",", ":"))
    headers = {"Content-Type": "application/json", "Idempotency-Key": message_id}
    if secret:
        headers.update(signed_headers(secret, message_id, payload, datetime.now(UTC)))
    try:
        async with session.post(
            url,
            data=payload.encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            if response.status >= 300:
                raise DeliveryFailure(
                    classify_http(response.status), f"helpdesk webhook HTTP {response.status}"
                )
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailure(
            FailureKind.TRANSIENT, f"helpdesk webhook {type(error).__name__}"
        ) from None
