"""Stubs of the four services the edge calls, with the deadlines it gives each call."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from askvault.billing.v1 import billing_pb2_grpc
from askvault.identity.v1 import identity_pb2_grpc
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2_grpc
from edge.settings import EdgeSettings
from runtime import clients


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call, or empty."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return str(info.reason)
    return ""


def is_overloaded(error: grpc.aio.AioRpcError) -> bool:
    """Whether a service refused the call for being at its bound of calls in flight
    (``runtime.admission``): nothing was claimed, and the same call later may succeed. Not
    retried by the channel (``runtime.clients``): a retry at once would feed the storm."""
    return (
        error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_reason(error) == "OVERLOADED"
    )


def is_unavailable(error: grpc.aio.AioRpcError) -> bool:
    """Whether a failure means "the other side cannot answer now" rather than "no"."""
    return error.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    )


class Peers:
    """The stubs, and the timeouts of their calls."""

    def __init__(self, settings: EdgeSettings) -> None:
        self._channels = [
            clients.channel(settings.identity_target),
            clients.channel(settings.policy_target),
            clients.channel(settings.billing_target),
            clients.channel(settings.notifier_target),
        ]
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channels[0])
        self.policy = policy_pb2_grpc.PolicyServiceStub(self._channels[1])
        self.billing = billing_pb2_grpc.BillingGatewayServiceStub(self._channels[2])
        self.notifier = notifier_pb2_grpc.NotifierServiceStub(self._channels[3])
        self._rpc_deadline = settings.rpc_deadline_seconds
        self._billing_deadline = settings.billing_deadline_seconds

    def timeout(self) -> float:
        """Timeout of a call to identity, policy or the notifier."""
        return clients.timeout(self._rpc_deadline)

    def billing_timeout(self) -> float:
        """Timeout of a call to the billing gateway."""
        return clients.timeout(self._billing_deadline)

    def channel_states(self) -> dict[str, grpc.ChannelConnectivity]:
        """Connectivity of each channel (for /readyz), without connecting."""
        names = ("identity", "policy", "billing_gateway", "notifier")
        return {
            name: channel.get_state(try_to_connect=True)
            for name, channel in zip(names, self._channels, strict=True)
        }

    async def close(self) -> None:
        """Closes the channels."""
        for channel in self._channels:
            await channel.close()
