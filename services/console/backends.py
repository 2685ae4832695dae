"""The services the console calls, and how their errors read on a page. Every call carries
the signed-in admin's own access token (``authorization: Bearer``), which decides what
the call may do. The channels add the console's service credential when it has a key; no RPC
grants the console anything for it (reads such as policy's GetBounds answer an admin's
credential to a caller that is not one of their services)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2

from askvault.billing.v1 import billing_pb2_grpc
from askvault.notifier.v1 import notifier_pb2_grpc
from askvault.policy.v1 import policy_pb2_grpc
from console.settings import ConsoleSettings
from runtime import clients

ResponseT = TypeVar("ResponseT")

# The names a page shows for each service.
POLICY = "policy"
BILLING = "billing gateway"
NOTIFIER = "notifier"
EDGE = "edge"


class CallFailed(Exception):
    """A call to a service failed; ``text`` is what the page shows (never a trace)."""

    def __init__(self, service: str, code: str, reason: str, detail: str) -> None:
        super().__init__(f"{service}: {code} {reason} {detail}")
        self.service = service
        self.code = code
        self.reason = reason
        self.detail = detail

    @property
    def text(self) -> str:
        if self.code == "UNAVAILABLE":
            return (
                f"The {self.service} service is unavailable (down or unreachable); nothing was "
                "changed. Try again shortly."
            )
        if self.code == "DEADLINE_EXCEEDED":
            return f"The {self.service} service did not answer in time; try again."
        reason = f" [{self.reason}]" if self.reason else ""
        return f"The {self.service} service refused: {self.detail}{reason}"


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""


@dataclass
class Backends:
    """Stubs of policy, the billing gateway and the notifier, and an HTTP client for the
    edge's admin endpoints."""

    policy: policy_pb2_grpc.PolicyServiceAsyncStub
    billing: billing_pb2_grpc.BillingGatewayServiceAsyncStub
    notifier: notifier_pb2_grpc.NotifierServiceAsyncStub
    channels: list[grpc.aio.Channel]
    http: aiohttp.ClientSession
    edge_url: str
    deadline: float

    @classmethod
    def open(cls, settings: ConsoleSettings) -> Backends:
        channels = [
            clients.channel(target)
            for target in (
                settings.policy_target,
                settings.billing_target,
                settings.notifier_target,
            )
        ]
        return cls(
            policy_pb2_grpc.PolicyServiceStub(channels[0]),
            billing_pb2_grpc.BillingGatewayServiceStub(channels[1]),
            notifier_pb2_grpc.NotifierServiceStub(channels[2]),
            channels,
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.rpc_deadline_seconds)
            ),
            settings.edge_url,
            settings.rpc_deadline_seconds,
        )

    async def call(
        self,
        service: str,
        method: Callable[..., Awaitable[ResponseT]],
        request: Any,
        token: str,
    ) -> ResponseT:
        """``method(request)`` as the admin of ``token``; raises CallFailed."""
        try:
            return await method(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as error:
            raise CallFailed(
                service, error.code().name, _reason(error), error.details() or ""
            ) from None

    async def edge_get(self, path: str, params: dict[str, str], token: str) -> Any:
        """GET an edge admin endpoint as the admin; the JSON body, or raises CallFailed."""
        try:
            async with self.http.get(
                f"{self.edge_url}{path}",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                text = await response.text()
                if response.status >= 500 and response.status != 501:
                    raise CallFailed(EDGE, "UNAVAILABLE", "", f"HTTP {response.status}")
                body = json.loads(text) if text else {}
                if response.status >= 400:
                    failure = body.get("error", {}) if isinstance(body, dict) else {}
                    raise CallFailed(
                        EDGE,
                        f"HTTP_{response.status}",
                        str(failure.get("code", "")),
                        str(failure.get("message", text[:200])),
                    )
                return body
        except (aiohttp.ClientError, TimeoutError) as error:
            raise CallFailed(EDGE, "UNAVAILABLE", "", type(error).__name__) from None
        except json.JSONDecodeError:
            raise CallFailed(EDGE, "BAD_ANSWER", "", "the edge's answer is not JSON") from None

    async def close(self) -> None:
        await self.http.close()
        for channel in self.channels:
            await channel.close()
