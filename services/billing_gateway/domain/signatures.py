"""Stripe webhook signatures: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256>``.

Verified against every signing secret of the workspace (several during a rotation), in
constant time, and refused when the timestamp is outside the tolerance in EITHER direction:
the SDK's ``verify_header`` accepts timestamps from the future, we do not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from runtime import errors

_SCHEME = "v1"
# A header longer than this is not a Stripe header; refusing early bounds the work.
MAX_HEADER_LENGTH = 4096


def _refused(reason: str, message: str) -> errors.ServiceError:
    return errors.ServiceError(errors.Kind.UNAUTHENTICATED, reason, message)


def parse_header(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of a header; raises SIGNATURE_INVALID when malformed."""
    if not header or len(header) > MAX_HEADER_LENGTH:
        raise _refused("SIGNATURE_INVALID", "missing or oversized Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise _refused("SIGNATURE_INVALID", "malformed timestamp") from None
        elif name == _SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise _refused("SIGNATURE_INVALID", "no timestamp or no v1 signature")
    return timestamp, signatures


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A header as Stripe writes it (tests and the benchmark sign with it)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return f"t={timestamp},{_SCHEME}={digest.hexdigest()}"


def verify(
    payload: bytes,
    header: str,
    secrets: Iterable[str],
    *,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Raises UNAUTHENTICATED SIGNATURE_INVALID unless one secret signed exactly these bytes,
    or SIGNATURE_TIMESTAMP_OUT_OF_RANGE when the signed time is too old or in the future.

    The signature is checked before the time, so an attacker learns nothing about secrets
    from the reason, and an old replay of a genuine event is named for what it is."""
    timestamp, signatures = parse_header(header)
    signed = str(timestamp).encode() + b"." + payload
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in signatures:
            # Every comparison runs; a match does not end the loop early. As bytes: a str with
            # non-ASCII characters makes compare_digest raise TypeError (was INTERNAL).
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise _refused("SIGNATURE_INVALID", "the signature matches no signing secret")
    if abs(now - timestamp) > tolerance_seconds:
        raise _refused(
            "SIGNATURE_TIMESTAMP_OUT_OF_RANGE", "the signature timestamp is outside the tolerance"
        )
