"""List pagination: bounded page sizes and opaque keyset cursors (sort time, id)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from runtime import errors


def page_size(requested: int, default: int, maximum: int) -> int:
    """The requested size, the default when unset, never above the maximum; negative is
    INVALID_ARGUMENT."""
    if requested < 0:
        raise errors.invalid_argument(errors.FieldViolation("page_size", "must not be negative"))
    return min(requested or default, maximum)


def encode_cursor(sort_time: datetime, object_id: str) -> str:
    """An opaque token naming the last item of a page."""
    raw = json.dumps([sort_time.isoformat(), object_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(token: str) -> tuple[datetime, str] | None:
    """The (sort time, id) a token names; None for the first page; a token that was not made
    by ``encode_cursor`` is INVALID_ARGUMENT."""
    if not token:
        return None
    try:
        sort_time, object_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(sort_time), str(object_id)
    except (ValueError, TypeError, binascii.Error):
        raise errors.invalid_argument(
            errors.FieldViolation("page_token", "not a token of this list")
        ) from None
