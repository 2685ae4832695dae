"""Checks every request gets before its handler runs: values no field of any contract may
hold, which would otherwise fail deep inside a handler as an INTERNAL error.

- A NUL character in a string: PostgreSQL text cannot store it, so a query with one fails
  (``invalid byte sequence for encoding "UTF8": 0x00``) wherever the string reaches SQL.
- A ``google.protobuf.Timestamp`` outside 0001-01-01..9999-12-31 or with nanos outside
  [0, 1e9), and a ``google.protobuf.Duration`` outside +-10,000 years or with nanos of the
  wrong sign or size: ``ToDatetime()`` / ``ToTimedelta()`` raise on them.

Found by the fuzzing in ``tests/security``. Bytes fields are not checked (they are opaque).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from runtime import errors

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, as in timestamp.proto.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
# +-10,000 years, as in duration.proto.
_MAX_DURATION_SECONDS = 315_576_000_000
_NANOS = 1_000_000_000
# Requests nest a few levels at most; deeper is not a request of ours.
_MAX_DEPTH = 16


def check(request: Any) -> None:
    """Raises INVALID_ARGUMENT naming every field that holds a value no field may hold."""
    violations: list[errors.FieldViolation] = []
    if hasattr(request, "DESCRIPTOR"):
        _walk(request, "", violations, 0)
    if violations:
        raise errors.invalid_argument(*violations)


def _walk(message: Any, prefix: str, found: list[errors.FieldViolation], depth: int) -> None:
    if depth > _MAX_DEPTH:
        found.append(errors.FieldViolation(prefix or "request", "nested too deeply"))
        return
    full_name = message.DESCRIPTOR.full_name
    if full_name == _TIMESTAMP:
        if not (_MIN_SECONDS <= message.seconds <= _MAX_SECONDS and 0 <= message.nanos < _NANOS):
            found.append(errors.FieldViolation(prefix, "timestamp out of range"))
        return
    if full_name == _DURATION:
        seconds, nanos = message.seconds, message.nanos
        same_sign = seconds == 0 or nanos == 0 or (seconds > 0) == (nanos > 0)
        if not (abs(seconds) <= _MAX_DURATION_SECONDS and abs(nanos) < _NANOS and same_sign):
            found.append(errors.FieldViolation(prefix, "duration out of range"))
        return
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _value(f"{path}[{key!r}]", key, found)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _walk(item, f"{path}[{key!r}]", found, depth + 1)
                else:
                    _value(f"{path}[{key!r}]", item, found)
        elif field.is_repeated:
            for index, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    _walk(item, f"{path}[{index}]", found, depth + 1)
                else:
                    _value(f"{path}[{index}]", item, found)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(value, path, found, depth + 1)
        else:
            _value(path, value, found)


def _value(path: str, value: Any, found: list[errors.FieldViolation]) -> None:
    if isinstance(value, str) and "\x00" in value:
        found.append(errors.FieldViolation(path, "must not contain NUL characters"))
