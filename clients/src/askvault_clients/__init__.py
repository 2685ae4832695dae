"""Typed clients of AskVault's services for internal callers.

The generated modules are in ``askvault.<service>.v1`` (``policy_pb2``, ``policy_pb2_grpc``
and their ``.pyi`` stubs); this package adds the channel factory and the service credential::

    from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
    from askvault_clients import ServiceCredential, SigningKey, channel

    credential = ServiceCredential(SigningKey.from_file("/keys/edge.pem", "edge"))
    with channel("policy:50062", credential=credential) as ch:
        stub = policy_pb2_grpc.PolicyServiceStub(ch)
        stub.GetBounds(policy_pb2.GetBoundsRequest(workspace_id="ws_1"))
"""

from __future__ import annotations

from askvault_clients.channels import Tls, aio_channel, channel, service_config
from askvault_clients.credentials import ServiceCredential, SigningKey, issue

__all__ = [
    "ServiceCredential",
    "SigningKey",
    "Tls",
    "aio_channel",
    "channel",
    "issue",
    "service_config",
]
