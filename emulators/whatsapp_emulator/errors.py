"""The Cloud API's error answers, as documented
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes)."""

from __future__ import annotations

import secrets
from typing import Any

# code -> (HTTP status, title, details)
DOCUMENTED: dict[int, tuple[int, str, str]] = {
    1: (500, "API Unknown", "Invalid request or possible server error."),
    2: (503, "API Service", "Temporary due to downtime or due to being overloaded."),
    100: (400, "Invalid parameter", "The request included invalid or unsupported parameters."),
    190: (401, "Access token has expired", "Your access token has expired."),
    130429: (
        400,
        "Rate limit hit",
        "Cloud API message throughput has been reached.",
    ),
    131000: (500, "Something went wrong", "Message failed to send because of an unknown error."),
    131026: (
        400,
        "Message undeliverable",
        "Unable to deliver message: the recipient is not a WhatsApp user, has not accepted the"
        " terms, or uses an old app.",
    ),
    131047: (
        400,
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
    ),
    131051: (400, "Unsupported message type", "Unsupported message type."),
    131056: (
        400,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone"
        " number in a short period of time.",
    ),
    132001: (404, "Template does not exist", "The template does not exist in that language."),
}


def title(code: int) -> str:
    """The documented title of a code."""
    return DOCUMENTED.get(code, (400, f"Error {code}", ""))[1]


def error_body(code: int) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a synchronous error answer."""
    status, error_title, details = DOCUMENTED.get(code, (400, f"Error {code}", ""))
    return status, {
        "error": {
            "message": f"(#{code}) {error_title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": secrets.token_urlsafe(12),
        }
    }


def webhook_error(code: int) -> dict[str, Any]:
    """The ``errors`` entry of a failed status webhook."""
    _, error_title, details = DOCUMENTED.get(code, (400, f"Error {code}", ""))
    return {
        "code": code,
        "title": error_title,
        "message": error_title,
        "error_data": {"details": details},
    }
