"""Errors a service raises, independent of gRPC; the server interceptor maps them to a
gRPC status with ``google.rpc.ErrorInfo`` (reason, domain, metadata) and, for invalid input,
``google.rpc.BadRequest`` field violations.

Reasons are the names of ``askvault.common.v1.ErrorReason`` without the prefix.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class Kind(enum.Enum):
    """The meaning of an error; each maps to one gRPC status code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    ABORTED = "ABORTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: its path ("recipient.email") and what is wrong."""

    field: str
    description: str


@dataclass
class ServiceError(Exception):
    """An expected failure with a machine-readable reason."""

    kind: Kind
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: Sequence[FieldViolation] = ()

    def __str__(self) -> str:
        return f"{self.kind.value} {self.reason}: {self.message}"


def invalid_argument(*violations: FieldViolation, message: str = "") -> ServiceError:
    """An INVALID_ARGUMENT error listing the fields at fault."""
    text = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
    return ServiceError(Kind.INVALID_ARGUMENT, "INVALID_ARGUMENT", text, violations=violations)


def not_found(what: str, reason: str = "NOT_FOUND") -> ServiceError:
    """A NOT_FOUND error; the same answer whether the object is missing or someone else's."""
    return ServiceError(Kind.NOT_FOUND, reason, f"{what} not found")


class Validator:
    """Collects field violations so one error names every bad field at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def require(self, condition: bool, field_path: str, description: str) -> None:
        """Records a violation when the condition does not hold."""
        if not condition:
            self.violations.append(FieldViolation(field_path, description))

    def non_empty(self, value: str, field_path: str, max_length: int = 256) -> None:
        """Requires a non-blank string of bounded length."""
        self.require(bool(value.strip()), field_path, "must not be empty")
        self.require(len(value) <= max_length, field_path, f"at most {max_length} characters")

    def check(self) -> None:
        """Raises INVALID_ARGUMENT when any violation was recorded."""
        if self.violations:
            raise invalid_argument(*self.violations)
