"""JSON logs carrying the current trace id; values that look like secrets are masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from runtime import cards

# Field names whose values are never written, whatever the caller passes.
_SECRET_FIELD = re.compile(
    r"(secret|password|token|authorization|api_key|signature|user_hash|assertion|card)", re.I
)
# Values that are secrets or card data even inside free text (any 13-19 digit run grouped by
# spaces or dashes, Luhn-valid or not; cards written any other way are found by runtime.cards).
_SECRET_VALUE = re.compile(
    r"(sk_(live|test)_[A-Za-z0-9_]+|rk_(live|test)_[A-Za-z0-9_]+|whsec_[A-Za-z0-9_]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|\b(?:\d[ -]?){13,19}\b)"
)
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """Masks API keys, webhook secrets, JWTs and card-number-like digit runs in text."""
    return _SECRET_VALUE.sub("[redacted]", cards.redact(text, "[redacted]"))


def _clean(key: str, value: Any) -> Any:
    if _SECRET_FIELD.search(key):
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace and span ids, fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure(service: str, level: str = "INFO") -> None:
    """Sends every log record of the process to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
