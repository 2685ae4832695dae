"""Calls to the other services of the skill: identity (assertion keys, tags, contacts),
policy (grants) and the notifier. Every mutating call carries an idempotency key derived
from our own ids, so a retry after a crash repeats nothing."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.rpc import error_details_pb2, status_pb2

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2, notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from runtime import assertions, clients, errors

# Reasons policy answers that we pass on as they are (the grant is the caller's problem).
_GRANT_REASONS = frozenset(
    {
        "GRANT_INVALID",
        "GRANT_ALREADY_REDEEMED",
        "GRANT_EXPIRED",
        "GRANT_ALREADY_RESOLVED",
        "GRANT_DETAILS_MISMATCH",
        "REFUND_OUTSIDE_WINDOW",
        "PRICE_NOT_SELF_SERVE",
        "NOT_FOUND",
        "INVALID_ARGUMENT",
    }
)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call (an empty one when it carries none)."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return error_details_pb2.ErrorInfo()


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call, or empty."""
    return str(_error_info(error).reason)


# The ErrorInfo metadata key of a limit's refusal: seconds until the limit takes a call again.
RETRY_AFTER_SECONDS = "retry_after_seconds"


def limit_reopens_in(error: errors.ServiceError) -> float | None:
    """Seconds until a rate limit that refused a call takes it again, when the refusal said
    so (the notifier's hourly windows do); None for any other failure."""
    if error.kind is not errors.Kind.RESOURCE_EXHAUSTED:
        return None
    try:
        seconds = float(error.metadata.get(RETRY_AFTER_SECONDS, ""))
    except ValueError:
        return None
    # A day at most: a refusal that claims more is not believed beyond it.
    return min(max(seconds, 0.0), 86_400.0)


def dependency_unavailable(what: str) -> errors.ServiceError:
    """UNAVAILABLE DEPENDENCY_UNAVAILABLE."""
    return errors.ServiceError(
        errors.Kind.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE", f"{what} did not answer"
    )


def _grant_error(error: grpc.aio.AioRpcError) -> errors.ServiceError:
    reason = error_reason(error)
    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return dependency_unavailable("policy")
    if reason in _GRANT_REASONS or error.code() in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    ):
        if reason in ("", "NOT_FOUND", "INVALID_ARGUMENT"):
            reason = "GRANT_INVALID"
        return errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION, reason, "policy refused the grant"
        )
    return dependency_unavailable("policy")


class Peers:
    """Stubs of identity, policy and the notifier, and the assertion verifier."""

    def __init__(self, identity_target: str, policy_target: str, notifier_target: str) -> None:
        self._channels = [
            clients.channel(identity_target),
            clients.channel(policy_target),
            clients.channel(notifier_target),
        ]
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channels[0])
        self.policy = policy_pb2_grpc.PolicyServiceStub(self._channels[1])
        self.notifier = notifier_pb2_grpc.NotifierServiceStub(self._channels[2])
        self.verifier = assertions.Verifier(self._fetch_keys)

    async def _fetch_keys(self) -> Mapping[str, Ed25519PublicKey]:
        try:
            response = await self.identity.GetVerificationKeys(
                identity_pb2.GetVerificationKeysRequest(), timeout=clients.timeout(2.0)
            )
        except grpc.aio.AioRpcError:
            raise dependency_unavailable("identity") from None
        return {key.key_id: assertions.public_key_from_raw(key.public_key) for key in response.keys}

    async def close(self) -> None:
        """Closes the channels."""
        for channel in self._channels:
            await channel.close()

    # assertions

    async def verify(self, token: str, workspace_id: str) -> assertions.Assertion:
        """The verified assertion, or UNAUTHENTICATED with identity's reason."""
        try:
            return await self.verifier.verify(token, workspace_id)
        except assertions.AssertionRefused as refused:
            reason = (
                refused.reason if refused.reason != "WORKSPACE_MISMATCH" else "ASSERTION_INVALID"
            )
            raise errors.ServiceError(
                errors.Kind.UNAUTHENTICATED, reason, "the identity assertion is not accepted"
            ) from None

    # policy

    async def redeem(
        self,
        workspace_id: str,
        grant_id: str,
        action: int,
        details: policy_pb2.ActionDetails,
        operation_id: str,
    ) -> policy_pb2.Grant:
        """Redeems the grant for exactly these parameters (idempotent by operation id)."""
        try:
            response = await self.policy.Redeem(
                policy_pb2.RedeemRequest(
                    workspace_id=workspace_id,
                    grant_id=grant_id,
                    action=action,  # type: ignore[arg-type]
                    details=details,
                    idempotency_key=operation_id,
                ),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError as error:
            raise _grant_error(error) from None
        grant: policy_pb2.Grant = response.grant
        return grant

    async def commit(
        self, workspace_id: str, grant_id: str, operation_id: str, stripe_object_id: str
    ) -> None:
        """Commits the grant (idempotent by operation id)."""
        try:
            await self.policy.Commit(
                policy_pb2.CommitRequest(
                    workspace_id=workspace_id,
                    grant_id=grant_id,
                    stripe_object_id=stripe_object_id,
                    idempotency_key=f"{operation_id}-commit",
                ),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError as error:
            raise _grant_error(error) from None

    async def release(
        self, workspace_id: str, grant_id: str, operation_id: str, reason: str
    ) -> None:
        """Releases the grant (idempotent by operation id)."""
        try:
            await self.policy.Release(
                policy_pb2.ReleaseRequest(
                    workspace_id=workspace_id,
                    grant_id=grant_id,
                    reason=reason,
                    idempotency_key=f"{operation_id}-release",
                ),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError as error:
            raise _grant_error(error) from None

    async def self_serve_price_ids(self, workspace_id: str) -> tuple[str, ...]:
        """The workspace's self-serve prices as policy holds them (empty: the default);
        UNAVAILABLE DEPENDENCY_UNAVAILABLE when policy does not answer (no write then)."""
        try:
            response = await self.policy.GetWorkspaceTerms(
                policy_pb2.GetWorkspaceTermsRequest(workspace_id=workspace_id),
                timeout=clients.timeout(3.0),
            )
        except grpc.aio.AioRpcError:
            raise dependency_unavailable("policy") from None
        return tuple(response.self_serve_price_ids)

    # identity and notifier (used by the webhook worker)

    async def update_tags(self, request: identity_pb2.UpdateTagsRequest) -> None:
        """Updates tags; UNAVAILABLE leaves the event for a retry."""
        try:
            await self.identity.UpdateTags(request, timeout=clients.timeout(5.0))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return  # no contact linked to the customer yet: nothing to tag
            raise dependency_unavailable("identity") from None

    async def contacts_of(
        self, workspace_id: str, stripe_customer_id: str
    ) -> list[identity_pb2.Contact]:
        """The contacts linked to the customer."""
        try:
            response = await self.identity.FindContactsByCustomer(
                identity_pb2.FindContactsByCustomerRequest(
                    workspace_id=workspace_id, stripe_customer_id=stripe_customer_id
                ),
                timeout=clients.timeout(5.0),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise dependency_unavailable("identity") from None
        return list(response.contacts)

    async def send(self, request: notifier_pb2.SendRequest) -> None:
        """Queues a message (the dedup key makes one message of many calls).

        RESOURCE_EXHAUSTED (the notifier's hourly limits) passes in time: it raises a
        ServiceError (with the notifier's retry_after_seconds), so the event is deferred to
        when the limit's window takes it. INVALID_ARGUMENT
        (our request is wrong: a bug) and FAILED_PRECONDITION (no consent, no destination)
        do not change by retrying: they raise MessageRefused, which the worker records as
        the event's outcome instead of retrying forever or dropping it silently."""
        try:
            await self.notifier.Send(request, timeout=clients.timeout(5.0))
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                info = _error_info(error)
                reopens = info.metadata.get(RETRY_AFTER_SECONDS, "")
                raise errors.ServiceError(
                    errors.Kind.RESOURCE_EXHAUSTED,
                    info.reason or "RATE_LIMITED",
                    "the notifier's rate limit is reached; the message waits",
                    metadata={RETRY_AFTER_SECONDS: reopens} if reopens else {},
                ) from None
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                raise MessageRefused(
                    code.name, error_reason(error), str(error.details() or "")
                ) from None
            raise dependency_unavailable("notifier") from None


class MessageRefused(Exception):
    """The notifier will never take this message as asked (a retry cannot help)."""

    def __init__(self, code: str, reason: str, detail: str) -> None:
        super().__init__(f"{code} {reason}: {detail}")
        self.code = code
        self.reason = reason
        self.detail = detail

    @property
    def is_bug(self) -> bool:
        """INVALID_ARGUMENT: our request broke the notifier's contract."""
        return bool(self.code == grpc.StatusCode.INVALID_ARGUMENT.name)
