"""Conversions between protobuf well-known types and Python values, shared by every
service's gRPC layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2


def timestamp(value: datetime | int | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp from an aware datetime or unix seconds (Stripe's form); None stays unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    if isinstance(value, int):
        stamp.FromSeconds(value)
    else:
        stamp.FromDatetime(value)
    return stamp


def to_datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime from a Timestamp."""
    return stamp.ToDatetime(UTC)


def duration(value: timedelta | None) -> duration_pb2.Duration | None:
    """A Duration from a timedelta; None stays unset."""
    if value is None:
        return None
    result = duration_pb2.Duration()
    result.FromTimedelta(value)
    return result
