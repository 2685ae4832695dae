"""The gRPC side of the contract, asked of each service's server: health, reflection, every
RPC's refusals with their error details, and an idempotent replay."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from askvault.billing.v1 import billing_pb2
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from askvault_clients import aio_channel
from conformance.report import expect
from conformance.target import Target
from runtime import grpc_typing

# The contract each server must offer, by the names GRPC= uses.
CONTRACTS: dict[str, str] = {
    "identity": identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
    "policy": policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    "billing_gateway": billing_pb2.DESCRIPTOR.services_by_name["BillingGatewayService"].full_name,
    "notifier": notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name,
}
# Codes that say the server did not handle a call: never a refusal.
UNHANDLED = {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
ERROR_DOMAIN_SUFFIX = ".askvault.dev"
CALL_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Refusal:
    """A call's status and its ``google.rpc`` details."""

    code: grpc.StatusCode
    reason: str
    domain: str
    field_violations: int

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason or '(no ErrorInfo)'}"


@contextlib.asynccontextmanager
async def _channel(target: Target, service: str, signed: bool) -> AsyncIterator[grpc.aio.Channel]:
    credential = target.credential() if signed else None
    address = target.grpc[service]
    async with aio_channel(address, credential=credential, tls=target.tls, max_attempts=1) as ch:
        yield ch


def refusal_of(error: grpc.aio.AioRpcError) -> Refusal:
    """The status of a failed call with its ErrorInfo and BadRequest details."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason = domain = ""
    violations = 0
    for detail in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, domain = info.reason, info.domain
        elif detail.Unpack(bad):
            violations = len(bad.field_violations)
    return Refusal(error.code(), reason, domain, violations)


async def health(target: Target, service: str) -> str:
    async with _channel(target, service, signed=False) as channel:
        stub = grpc_typing.health_stub(channel)
        overall = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_SECONDS)
        contract = await stub.Check(
            health_pb2.HealthCheckRequest(service=CONTRACTS[service]),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    serving = health_pb2.HealthCheckResponse.SERVING
    expect(overall.status == serving, f"overall health {overall.status}")
    expect(contract.status == serving, f"{CONTRACTS[service]} health {contract.status}")
    return f"SERVING, {CONTRACTS[service]} SERVING"


async def reflection(target: Target, service: str) -> str:
    async with _channel(target, service, signed=False) as channel:
        stub = grpc_typing.reflection_stub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        listed = {
            s.name
            async for reply in stub.ServerReflectionInfo(iter([request]))
            for s in reply.list_services_response.service
        }
    expect(CONTRACTS[service] in listed, f"reflection lists {sorted(listed)}")
    return f"lists {CONTRACTS[service]}"


def _methods(service: str) -> list[MethodDescriptor]:
    descriptor: ServiceDescriptor = descriptor_pool.Default().FindServiceByName(CONTRACTS[service])
    return list(descriptor.methods)


async def _call_empty(channel: grpc.aio.Channel, method: MethodDescriptor) -> Refusal | None:
    """Calls ``method`` with an empty request; None when it was answered."""
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        await call(request_type(), timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as error:
        return refusal_of(error)
    return None


def _well_formed(refusal: Refusal | None) -> str:
    """What is wrong with a refusal ("" when nothing). An answer is fine: some requests mean
    something empty (the verification keys; an empty batch of WhatsApp statuses)."""
    if refusal is None:
        return ""
    if refusal.code in UNHANDLED:
        return f"{refusal.code.name}: not handled"
    if not refusal.reason:
        return f"{refusal.code.name} without an ErrorInfo reason"
    if not refusal.domain.endswith(ERROR_DOMAIN_SUFFIX):
        return f"ErrorInfo domain {refusal.domain!r}"
    if refusal.code == grpc.StatusCode.INVALID_ARGUMENT and refusal.field_violations == 0:
        return "INVALID_ARGUMENT without BadRequest field violations"
    return ""


async def refusals_without_credential(target: Target, service: str) -> str:
    """Every RPC refuses a caller that proves nothing, before reading the request."""
    problems = []
    async with _channel(target, service, signed=False) as channel:
        methods = _methods(service)
        for method in methods:
            refusal = await _call_empty(channel, method)
            problem = _well_formed(refusal)
            if refusal is None:
                problem = "answered a caller without a credential"
            elif not problem and refusal.code != grpc.StatusCode.UNAUTHENTICATED:
                problem = f"{refusal}, not UNAUTHENTICATED"
            if problem:
                problems.append(f"{method.name}: {problem}")
    expect(not problems, "; ".join(problems))
    return f"{len(methods)} RPCs UNAUTHENTICATED with ErrorInfo"


async def refusals_of_empty_requests(target: Target, service: str) -> str:
    """Every RPC refuses an empty request of a credentialed caller for a reason it names."""
    problems, reasons, answered = [], set(), []
    async with _channel(target, service, signed=True) as channel:
        methods = _methods(service)
        for method in methods:
            refusal = await _call_empty(channel, method)
            problem = _well_formed(refusal)
            if problem:
                problems.append(f"{method.name}: {problem}")
            elif refusal is None:
                answered.append(method.name)
            else:
                reasons.add(str(refusal))
    expect(not problems, "; ".join(problems))
    shown = f"; answered: {', '.join(answered)}" if answered else ""
    return f"{len(methods) - len(answered)} RPCs refused: {', '.join(sorted(reasons))}{shown}"


async def _assertion(target: Target) -> str:
    async with _channel(target, "identity", signed=True) as channel:
        verified = await identity_pb2_grpc.IdentityServiceStub(channel).VerifyVisitor(
            identity_pb2.VerifyVisitorRequest(
                workspace_id=target.workspace_id,
                user_id=target.visitor.user_id,
                email=target.visitor.email,
                user_hash=target.visitor.user_hash,
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    expect(bool(verified.identity_assertion), "VerifyVisitor gave no assertion")
    return verified.identity_assertion


async def idempotent_replay(target: Target) -> str:
    """The same Authorize twice (a fresh assertion of the same visitor the second time) is
    one decision; the same key with other parameters is IDEMPOTENCY_MISMATCH. The request is
    an unconfirmed refund, which reserves nothing."""
    key = f"conformance-{uuid.uuid4().hex}"

    def request(assertion: str, amount_minor: int) -> policy_pb2.AuthorizeRequest:
        return policy_pb2.AuthorizeRequest(
            workspace_id=target.workspace_id,
            identity_assertion=assertion,
            action=common_pb2.BILLING_ACTION_REFUND,
            details=policy_pb2.ActionDetails(
                charge_id="ch_conformance",
                amount=common_pb2.Money(amount_minor=amount_minor, currency="usd"),
            ),
            confirmed=False,
            idempotency_key=key,
        )

    async with _channel(target, "policy", signed=True) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        first = await stub.Authorize(
            request(await _assertion(target), 100), timeout=CALL_TIMEOUT_SECONDS
        )
        again = await stub.Authorize(
            request(await _assertion(target), 100), timeout=CALL_TIMEOUT_SECONDS
        )
        expect(_same(first, again), f"a replay answered differently: {first} / {again}")
        refusal: Refusal | None = None
        try:
            await stub.Authorize(
                request(await _assertion(target), 200), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            refusal = refusal_of(error)
    expect(
        refusal is not None
        and (refusal.code, refusal.reason)
        == (grpc.StatusCode.INVALID_ARGUMENT, "IDEMPOTENCY_MISMATCH"),
        f"the same key with another amount gave {refusal}",
    )
    decision = policy_pb2.Decision.Name(first.decision)
    return f"replayed {decision}; other parameters IDEMPOTENCY_MISMATCH"


def _same(first: Message, again: Message) -> bool:
    return first.SerializeToString(deterministic=True) == again.SerializeToString(
        deterministic=True
    )
