"""Hand-offs posted as JSON to a workspace's helpdesk webhook.

The ``Idempotency-Key`` header carries the message id, so a helpdesk that sees the same
hand-off twice (a retry after a lost answer) can keep one.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from notifier.domain.outbox import DeliveryFailure, FailureKind, classify_http


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    idempotency_key: str,
    timeout_seconds: float,
) -> None:
    """Posts the hand-off; raises DeliveryFailure."""
    try:
        async with session.post(
            url,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
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
