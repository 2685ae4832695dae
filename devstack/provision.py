"""Provisions the demo workspace in the running services, idempotently."""

from __future__ import annotations

import hashlib
import hmac

import grpc

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from devstack import config
from runtime import auth


def admin_metadata(subject: str = "devstack-admin") -> tuple[tuple[str, str], ...]:
    """Call metadata with an admin credential of the local stack."""
    secret = config.local_keys()["ADMIN_TOKEN_SECRET"]
    return (("authorization", f"Bearer {auth.issue_admin_token(secret, subject)}"),)


async def _identity(demo: config.DemoConfig) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{demo.port('identity')}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        try:
            await stub.AddSecret(
                identity_pb2.AddSecretRequest(
                    workspace_id=demo.workspace_id,
                    key_id=demo.hmac_key_id,
                    secret=demo.hmac_secret,
                    idempotency_key=f"devstack-secret-{demo.hmac_key_id}",
                ),
                metadata=admin_metadata(),
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
    visitor = demo.visitors[0]
    # What the workspace's backend computes for its visitor (Intercom-style user_hash).
    user_hash = hmac.new(demo.hmac_secret, visitor["user_id"].encode(), hashlib.sha256).hexdigest()
    request = (
        f'{{"workspace_id":"{demo.workspace_id}","user_id":"{visitor["user_id"]}",'
        f'"email":"{visitor["email"]}","user_hash":"{user_hash}"}}'
    )
    return [
        f"Demo workspace {demo.workspace_id}: HMAC key {demo.hmac_key_id} (config/demo.toml).",
        "Verify the demo visitor through reflection:",
        f"  .venv/bin/grpcurl -plaintext -d '{request}' \\",
        f"    127.0.0.1:{demo.port('identity')} askvault.identity.v1.IdentityService/VerifyVisitor",
    ]


async def _policy(demo: config.DemoConfig) -> list[str]:
    """Puts the demo workspace on its AskVault plan; the other bounds stay at their defaults."""
    plan = policy_pb2.AskVaultPlan.Value(
        f"ASK_VAULT_PLAN_{demo.raw['workspace']['askvault_plan'].upper()}"
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{demo.port('policy')}") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        current = await stub.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id=demo.workspace_id), timeout=5
        )
        if current.bounds.askvault_plan != plan:
            bounds = policy_pb2.Bounds()
            bounds.CopyFrom(current.defaults)
            bounds.workspace_id = demo.workspace_id
            bounds.askvault_plan = plan
            await stub.ProposeBoundsChange(
                policy_pb2.ProposeBoundsChangeRequest(
                    workspace_id=demo.workspace_id,
                    bounds=bounds,
                    idempotency_key=f"devstack-bounds-{plan}",
                ),
                metadata=admin_metadata(),
                timeout=5,
            )
    return [f"Policy: {demo.workspace_id} on AskVault plan {policy_pb2.AskVaultPlan.Name(plan)}."]


async def provision(demo: config.DemoConfig, children_names: set[str]) -> list[str]:
    """Runs the provisioning of every service that is part of the stack."""
    notes: list[str] = []
    if "identity" in children_names:
        notes += await _identity(demo)
    if "policy" in children_names:
        notes += await _policy(demo)
    return notes
