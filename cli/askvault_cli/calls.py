"""gRPC calls to the services' admin RPCs: one channel per service, the admin's bearer in
``authorization`` metadata, a deadline on every call, and errors turned into one line.

An admin CLI is not a service: it sends no service credential (x-askvault-service). The
services answer admin RPCs to admin credentials alone; an RPC that only services may call
is refused with SERVICE_CREDENTIAL_REQUIRED, which is reported as such.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from askvault.billing.v1 import billing_pb2_grpc
from askvault.identity.v1 import identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2_grpc
from askvault_cli import settings
from askvault_cli.failures import CliError, ExitCode

ResponseT = TypeVar("ResponseT")

# What each status code means for the person at the terminal.
_EXIT_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNAVAILABLE,
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: ExitCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: ExitCode.CONFLICT,
    grpc.StatusCode.ABORTED: ExitCode.CONFLICT,
}


def idempotency_key(given: str | None) -> str:
    """The caller's key (a script retrying sends the same one), else a fresh one."""
    return given or f"cli-{uuid.uuid4()}"


class Admin:
    """The services as one admin reaches them."""

    def __init__(self, options: settings.Options) -> None:
        self.options = options
        self._channels: dict[str, grpc.Channel] = {}
        self._token: str | None = None

    @property
    def workspace(self) -> str:
        return self.options.workspace_id()

    @property
    def identity(self) -> identity_pb2_grpc.IdentityServiceStub:
        return identity_pb2_grpc.IdentityServiceStub(self._channel("identity"))

    @property
    def policy(self) -> policy_pb2_grpc.PolicyServiceStub:
        return policy_pb2_grpc.PolicyServiceStub(self._channel("policy"))

    @property
    def billing(self) -> billing_pb2_grpc.BillingGatewayServiceStub:
        return billing_pb2_grpc.BillingGatewayServiceStub(self._channel("billing_gateway"))

    @property
    def notifier(self) -> notifier_pb2_grpc.NotifierServiceStub:
        return notifier_pb2_grpc.NotifierServiceStub(self._channel("notifier"))

    def call(self, method: Callable[..., ResponseT], request: Any) -> ResponseT:
        """Calls one RPC as the admin; raises CliError naming what is missing or refused."""
        if self._token is None:
            self._token = self.options.credential()
        service = _service_of(request)
        try:
            return method(
                request,
                metadata=(("authorization", f"Bearer {self._token}"),),
                timeout=self.options.timeout,
                wait_for_ready=False,
            )
        except grpc.RpcError as error:
            raise explain(error, service, settings.address(service), self.workspace) from None

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            target = settings.address(service)
            ca_file = self.options.ca_file
            if ca_file:
                try:
                    roots = Path(ca_file).read_bytes()
                except OSError as error:
                    raise CliError(
                        f"cannot read the CA bundle {ca_file}: {error.strerror}",
                        ExitCode.USAGE,
                        reason="INVALID_OPTION",
                    ) from None
                credentials = grpc.ssl_channel_credentials(roots)
                self._channels[service] = grpc.secure_channel(target, credentials)
            else:
                self._channels[service] = grpc.insecure_channel(target)
        return self._channels[service]


# The service that answers the requests of each proto package.
_SERVICES = {
    "askvault.identity.v1": "identity",
    "askvault.policy.v1": "policy",
    "askvault.billing.v1": "billing_gateway",
    "askvault.notifier.v1": "notifier",
}


def _service_of(request: Any) -> str:
    """The service a request message is for, by its proto package."""
    return _SERVICES.get(request.DESCRIPTOR.file.package, "service")


def explain(error: grpc.RpcError, service: str, target: str, workspace: str) -> CliError:
    """One line for a failed call: what is missing or refused, the ErrorInfo reason and the
    fields the server named."""
    call: Any = error
    code: grpc.StatusCode = call.code()
    details = call.details() or ""
    reason, metadata, fields = _rich_details(call)
    exit_code = _EXIT_CODES.get(code, ExitCode.ERROR)
    if code == grpc.StatusCode.UNAVAILABLE and not reason:
        message = f"{service} is unreachable at {target} ({details or 'connection failed'})"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        message = f"{service} at {target} does not offer this RPC yet (an older version?)"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and not reason:
        message = f"{service} at {target} did not answer in time"
    elif reason == "SERVICE_CREDENTIAL_REQUIRED" or reason == "CALLER_NOT_ALLOWED":
        exit_code = ExitCode.PERMISSION_DENIED
        message = (
            f"{service} answers this RPC to its peer services only, not to an admin "
            f"credential ({details}); the service's allow-list lacks admin access"
        )
    elif code == grpc.StatusCode.PERMISSION_DENIED and reason == "ADMIN_REQUIRED":
        message = f"not an admin of workspace {workspace!r}: {details}"
    elif code == grpc.StatusCode.UNAUTHENTICATED and reason == "ADMIN_REQUIRED":
        message = f"the admin credential was refused (expired or invalid): {details}"
    else:
        message = details or code.name
    if reason:
        message += f" [{code.name} {reason}]"
    else:
        message += f" [{code.name}]"
    if fields:
        message += " " + "; ".join(f"{name}: {why}" for name, why in fields.items())
    if metadata:
        message += " (" + ", ".join(f"{key}={value}" for key, value in metadata.items()) + ")"
    return CliError(message, exit_code, reason=reason, code=code.name, fields=fields)


def _rich_details(call: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """(ErrorInfo reason, ErrorInfo metadata, BadRequest field -> description)."""
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        return "", {}, {}
    reason = ""
    metadata: dict[str, str] = {}
    fields: dict[str, str] = {}
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.update({v.field: v.description for v in bad_request.field_violations})
    return reason, metadata, fields
