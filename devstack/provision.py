"""Provisions the demo workspace in the running services, idempotently."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import grpc

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from devstack import config
from runtime import service_auth


def service_metadata(service_name: str) -> tuple[tuple[str, str], ...]:
    """Call metadata with a service credential of the local stack (the launcher holds every
    service's key)."""
    key = config.service_keys()[service_name]
    return ((service_auth.HEADER, service_auth.issue(key)),)


def admin_metadata(subject: str = "devstack-admin") -> tuple[tuple[str, str], ...]:
    """Call metadata with an admin credential of the local stack."""
    token = config.admin_provider().issue(subject)
    return (("authorization", f"Bearer {token}"),)


async def _identity(demo: config.DemoConfig, port: Callable[[str], int]) -> list[str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port('identity')}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        # The user_hash secret, and the visitor-token key as separate material.
        secrets = [(demo.hmac_key_id, demo.hmac_secret, identity_pb2.SECRET_PURPOSE_USER_HASH)]
        if demo.token_key_id:
            secrets.append(
                (demo.token_key_id, demo.token_secret, identity_pb2.SECRET_PURPOSE_VISITOR_TOKEN)
            )
        for key_id, secret, purpose in secrets:
            try:
                await stub.AddSecret(
                    identity_pb2.AddSecretRequest(
                        workspace_id=demo.workspace_id,
                        key_id=key_id,
                        secret=secret,
                        purpose=purpose,
                        idempotency_key=f"devstack-secret-{purpose}-{key_id}",
                    ),
                    metadata=admin_metadata(),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        await stub.UpdateWorkspaceSettings(
            identity_pb2.UpdateWorkspaceSettingsRequest(
                workspace_id=demo.workspace_id,
                settings=identity_pb2.WorkspaceSettings(
                    customer_metadata_key=demo.customer_metadata_key
                ),
                idempotency_key=f"devstack-identity-settings-{demo.customer_metadata_key}",
            ),
            metadata=admin_metadata(),
            timeout=5,
        )
    visitor = demo.visitors[0]
    # What the workspace's backend computes for its visitor (Intercom-style user_hash).
    user_hash = hmac.new(demo.hmac_secret, visitor["user_id"].encode(), hashlib.sha256).hexdigest()
    request = (
        f'{{"workspace_id":"{demo.workspace_id}","user_id":"{visitor["user_id"]}",'
        f'"email":"{visitor["email"]}","user_hash":"{user_hash}"}}'
    )
    return [
        f"Demo workspace {demo.workspace_id}: user_hash key {demo.hmac_key_id}, token key "
        f"{demo.token_key_id or '(none)'}, customers bound by metadata "
        f"{demo.customer_metadata_key or '(none)'} (config/demo.toml).",
        "Verify the demo visitor through reflection (as the edge: service credentials are on):",
        f"  .venv/bin/grpcurl -plaintext -d '{request}' \\",
        '    -H "x-askvault-service: $(.venv/bin/python -m devstack.token edge)" \\',
        f"    127.0.0.1:{port('identity')} askvault.identity.v1.IdentityService/VerifyVisitor",
    ]


async def _policy(demo: config.DemoConfig, port: Callable[[str], int]) -> list[str]:
    """Puts the demo workspace on its AskVault plan; the other bounds stay at their defaults."""
    plan = policy_pb2.AskVaultPlan.Value(
        f"ASK_VAULT_PLAN_{demo.raw['workspace']['askvault_plan'].upper()}"
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port('policy')}") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        # GetBounds is an internal RPC: the launcher, which holds every key of the local
        # stack, asks with the edge's credential.
        current = await stub.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id=demo.workspace_id),
            metadata=service_metadata("edge"),
            timeout=5,
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


async def _edge(
    demo: config.DemoConfig, children_names: set[str], port: Callable[[str], int]
) -> list[str]:
    """Connects the demo Stripe account to the billing gateway, with the edge as its webhook
    endpoint, and says how to chat."""
    import os
    import time

    from askvault.billing.v1 import billing_pb2, billing_pb2_grpc

    notes: list[str] = []
    if "billing_gateway" in children_names:
        real_key = os.environ.get("STRIPE_TEST_API_KEY", "")
        secret_key = real_key or str(demo.raw["stripe"]["secret_key"])
        # The emulator forgets its endpoints between runs: register again each run; against
        # real Stripe one key per workspace keeps a single endpoint.
        run = "stripe" if real_key else str(int(time.time()))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port('billing_gateway')}") as channel:
            await billing_pb2_grpc.BillingGatewayServiceStub(channel).ConnectAccount(
                billing_pb2.ConnectAccountRequest(
                    workspace_id=demo.workspace_id,
                    secret_key=secret_key,
                    webhook_url=f"http://127.0.0.1:{port('edge')}/api/stripe/webhooks/{demo.workspace_id}",
                    idempotency_key=f"devstack-connect-{run}",
                ),
                metadata=admin_metadata(),
                timeout=15,
            )
        notes.append(f"Billing: {demo.workspace_id} connected to Stripe; webhooks go to the edge.")
    if "edge" in children_names:
        visitor = demo.visitors[0]
        user_hash = hmac.new(
            demo.hmac_secret, visitor["user_id"].encode(), hashlib.sha256
        ).hexdigest()
        notes += [
            "Chat: `make chat` (DEMO_USER=bob make chat for another demo customer), `make demo` for the",  # noqa: E501
            "seed journey, or:",
            f"  curl -s localhost:{port('edge')}/v1/chat/turns -H 'content-type: application/json' \\",  # noqa: E501
            f'    -d \'{{"workspace_id":"{demo.workspace_id}","conversation_id":"c1",'
            f'"visitor":{{"user_id":"{visitor["user_id"]}","email":"{visitor["email"]}",'
            f'"user_hash":"{user_hash}"}},"text":"What is my plan?"}}\'',
        ]
    return notes


async def provision(
    demo: config.DemoConfig,
    children_names: set[str],
    port: Callable[[str], int] | None = None,
) -> list[str]:
    """Runs the provisioning of every service that is part of the stack; ``port`` gives the
    port of each process when it is not the demo config's (the chaos harness's stack)."""
    port_of = demo.port if port is None else port
    notes: list[str] = []
    if "identity" in children_names:
        notes += await _identity(demo, port_of)
    if "policy" in children_names:
        notes += await _policy(demo, port_of)
    notes += await _edge(demo, children_names, port_of)
    return notes
