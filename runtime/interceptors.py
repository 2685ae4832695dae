"""Server interceptor: admission (the bound on calls in flight, calls too late to serve),
deadlines, per-RPC metrics, and the mapping of errors to rich statuses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import metrics

from runtime import deadlines, errors, request_checks, service_auth
from runtime.admission import Admission, overloaded
from runtime.database import UNAVAILABLE_ERRORS
from runtime.service_auth import CallerPolicy

logger = logging.getLogger(__name__)

_CODES: dict[errors.Kind, int] = {
    errors.Kind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    errors.Kind.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    errors.Kind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    errors.Kind.NOT_FOUND: code_pb2.NOT_FOUND,
    errors.Kind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    errors.Kind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    errors.Kind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    errors.Kind.UNAVAILABLE: code_pb2.UNAVAILABLE,
    errors.Kind.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
    errors.Kind.ABORTED: code_pb2.ABORTED,
    errors.Kind.INTERNAL: code_pb2.INTERNAL,
}

UnaryHandler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


# The status travels in trailers, which gRPC caps (8 KiB by default): a request that echoes
# a huge name into a violation's field path would otherwise turn a clear INVALID_ARGUMENT
# into a bare RESOURCE_EXHAUSTED with no reason. Every echoed part is bounded.
MAX_STATUS_MESSAGE = 1024
MAX_VIOLATIONS = 10
MAX_VIOLATION_FIELD = 100
MAX_VIOLATION_DESCRIPTION = 200
MAX_METADATA_VALUE = 200


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_status(error: errors.ServiceError, domain: str) -> grpc.Status:
    """A gRPC status carrying ErrorInfo and, for invalid input, BadRequest (each part bounded
    so that the trailers always fit)."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason,
        domain=domain,
        metadata={
            _bounded(key, MAX_VIOLATION_FIELD): _bounded(value, MAX_METADATA_VALUE)
            for key, value in list(error.metadata.items())[:MAX_VIOLATIONS]
        },
    )
    details = [_pack(info)]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_bounded(violation.field, MAX_VIOLATION_FIELD),
                    description=_bounded(violation.description, MAX_VIOLATION_DESCRIPTION),
                )
                for violation in error.violations[:MAX_VIOLATIONS]
            ]
        )
        details.append(_pack(bad_request))
    status = status_pb2.Status(
        code=_CODES[error.kind],
        message=_bounded(error.message, MAX_STATUS_MESSAGE),
        details=details,
    )
    return rpc_status.to_status(status)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# Bucket bounds of the RPC duration histogram, in seconds: an RPC answers in milliseconds and
# its deadline is seconds away.
RPC_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary handler: refuses calls past the process's bound (``admission``) or
    too late to serve, records the deadline, times the call, maps errors."""

    def __init__(
        self,
        domain: str,
        callers: CallerPolicy | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._domain = domain
        self._callers = callers
        # No bound by default; a call whose deadline has passed is refused all the same.
        self.admission = admission or Admission(0)
        meter = metrics.get_meter("askvault.rpc")
        self._calls = meter.create_counter(
            "askvault.rpc.server.calls", description="RPCs served, by method and status code"
        )
        self._duration = meter.create_histogram(
            "askvault.rpc.server.duration",
            unit="s",
            description="RPC handling time",
            # In seconds: the SDK's default buckets (0, 5, 10, ... 10000) suit milliseconds
            # and would put every call in the first one, leaving the latency alert blind.
            explicit_bucket_boundaries_advisory=RPC_DURATION_BUCKETS,
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        # A handler of the aio server: its behaviour is a coroutine function taking the aio context.
        wrapped = self._wrap(method, cast(UnaryHandler, handler.unary_unary))
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, inner: UnaryHandler) -> UnaryHandler:
        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            token = deadlines.set_from_remaining(context.time_remaining())
            code = "OK"
            admitted = False
            try:
                # Refused before anything is claimed: a retry later does the action once.
                if not self.admission.exempt(method):
                    self.admission.check_deadline(deadlines.remaining())
                    admitted = self.admission.try_enter()
                    if not admitted:
                        raise overloaded()
                if self._callers is not None:
                    caller = self._callers.check(
                        method,
                        context.invocation_metadata(),
                        context.auth_context() if self._callers.trust_domain else None,
                    )
                    # Each RPC runs in its own task: the value ends with the call.
                    service_auth.verified_caller.set(caller)
                request_checks.check(request)
                return await inner(request, context)
            except errors.ServiceError as error:
                code = error.kind.value
                await context.abort_with_status(to_status(error, self._domain))
            except UNAVAILABLE_ERRORS as error:
                code = "UNAVAILABLE"
                logger.warning(
                    "database unavailable", extra={"rpc": method, "error": type(error).__name__}
                )
                unavailable = errors.ServiceError(
                    errors.Kind.UNAVAILABLE, "DATABASE_UNAVAILABLE", "database unavailable"
                )
                await context.abort_with_status(to_status(unavailable, self._domain))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                code = "ABORTED_OR_CANCELLED"
                raise
            except Exception:
                code = "INTERNAL"
                logger.exception("unhandled error", extra={"rpc": method})
                internal = errors.ServiceError(errors.Kind.INTERNAL, "INTERNAL", "internal error")
                await context.abort_with_status(to_status(internal, self._domain))
            finally:
                if admitted:
                    self.admission.leave()
                deadlines.reset(token)
                attributes = {"rpc.method": method, "rpc.grpc.status": code}
                self._calls.add(1, attributes)
                self._duration.record(time.perf_counter() - started, attributes)

        return handle
