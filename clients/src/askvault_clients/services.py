"""The services this package has stubs for, and which of their RPCs are reads."""

from __future__ import annotations

from google.protobuf.descriptor import FileDescriptor

from askvault.billing.v1 import billing_pb2
from askvault.identity.v1 import identity_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2

FILES: tuple[FileDescriptor, ...] = (
    identity_pb2.DESCRIPTOR,
    policy_pb2.DESCRIPTOR,
    billing_pb2.DESCRIPTOR,
    notifier_pb2.DESCRIPTOR,
)

# RPCs named so change nothing: a retry after UNAVAILABLE cannot act twice. (Every mutating
# RPC takes an idempotency key, but a caller that reuses keys wrongly should not be retried
# into a second action by its channel.)
READ_PREFIXES = ("Get", "List", "Find", "Check", "Preview")


def read_methods() -> list[tuple[str, str]]:
    """(full service name, method name) of every read RPC of the four services."""
    return [
        (service.full_name, method.name)
        for file in FILES
        for service in file.services_by_name.values()
        for method in service.methods
        if method.name.startswith(READ_PREFIXES)
    ]
