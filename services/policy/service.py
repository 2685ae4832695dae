"""Policy as the runtime starts it: the assertion verifier, the servicer, the expiry and
audit checkpoint workers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from askvault.identity.v1 import identity_pb2, identity_pb2_grpc
from askvault.policy.v1 import policy_pb2, policy_pb2_grpc
from policy import chaining
from policy.checkpoints import checkpoint_worker
from policy.domain.bounds import AskVaultPlan, Bounds, parse_caps
from policy.domain.periods import Period
from policy.expiry import expiry_worker
from policy.grpc_api import PolicyServicer
from policy.settings import PolicySettings
from runtime import assertions, clients, errors, tasks
from runtime.periodic import Periodic
from runtime.server import Resources
from runtime.service_auth import ADMIN, EVERY_RPC

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def default_bounds(settings: PolicySettings) -> Bounds:
    """The defaults every change is compared with. The plan is not a bound: the defaults
    name Business so that a workspace set to its defaults has the skill; a workspace with
    no bounds row at all gets these without a plan (skill off)."""
    return Bounds(
        askvault_plan=AskVaultPlan.BUSINESS,
        refund_caps=parse_caps(settings.default_refund_caps),
        refund_window=timedelta(seconds=settings.default_refund_window_seconds),
        plan_changes_per_period=settings.default_plan_changes_per_period,
        cancellation_grace=timedelta(seconds=settings.default_cancellation_grace_seconds),
        confirm_refunds=settings.default_confirm_refunds,
        confirm_plan_changes=settings.default_confirm_plan_changes,
        counter_period=Period(settings.default_counter_period),
        time_zone=settings.default_time_zone,
        resubscriptions_per_period=settings.default_resubscriptions_per_period,
    )


class IdentityKeySource:
    """Fetches identity's assertion keys with GetVerificationKeys over one channel, opened at
    first use and closed when policy stops; an unreachable identity fails the call closed
    with UNAVAILABLE DEPENDENCY_UNAVAILABLE."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._channel: grpc.aio.Channel | None = None

    async def __call__(self) -> Mapping[str, Ed25519PublicKey]:
        if not self._target:
            return {}
        if self._channel is None:
            self._channel = clients.channel(self._target)
        stub = identity_pb2_grpc.IdentityServiceStub(self._channel)
        try:
            response = await stub.GetVerificationKeys(
                identity_pb2.GetVerificationKeysRequest(), timeout=clients.timeout(2.0)
            )
        except grpc.aio.AioRpcError as error:
            raise errors.ServiceError(
                errors.Kind.UNAVAILABLE,
                "DEPENDENCY_UNAVAILABLE",
                f"identity's verification keys are unavailable ({error.code().name})",
            ) from None
        return {
            key.key_id: assertions.public_key_from_raw(key.public_key)
            for key in response.keys
            if key.algorithm == assertions.ALGORITHM
        }

    async def close(self) -> None:
        """Closes the channel (calls in flight are cancelled)."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


class PolicyService:
    """The policy service for the runtime."""

    name = "policy"
    migrations_package = "policy.migrations"
    error_domain = "policy.askvault.dev"
    service_names = (policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,)
    # Who may call which RPC when service credentials are on (SERVICE_PUBLIC_KEYS): only the
    # enforcement point resolves grants.
    allowed_callers = {
        EVERY_RPC: frozenset({"edge", "billing_gateway"}),
        "Redeem": frozenset({"billing_gateway"}),
        "Commit": frozenset({"billing_gateway"}),
        "Release": frozenset({"billing_gateway"}),
        # The billing gateway carries out approved escalations and records how that ended.
        "RecordEscalationOutcome": frozenset({"billing_gateway"}),
        **{
            method: frozenset({ADMIN})
            for method in (
                "ListEscalations",
                "ApproveEscalation",
                "RejectEscalation",
                "ProposeBoundsChange",
                "ApproveBoundsChange",
                "ListBoundsChanges",
                "ListAuditEvents",
                "VerifyAuditChain",
                "VerifyAuditCheckpoint",
            )
        },
        # Read by the services, and by admins (the console, the CLI) with their own credential.
        "GetBounds": frozenset({"edge", "billing_gateway", ADMIN}),
        "GetEscalation": frozenset({"edge", "billing_gateway", ADMIN}),
        # The edge speaks by them (time zone, self-serve prices, caps); the billing gateway
        # reads whether the workspace lists self-serve prices before a move to another price.
        "GetWorkspaceTerms": frozenset({"edge", "billing_gateway"}),
    }

    def __init__(
        self,
        settings: PolicySettings,
        *,
        key_source: assertions.KeyFetcher | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._identity_keys = IdentityKeySource(settings.identity_target)
        self._verifier = assertions.Verifier(
            key_source or self._identity_keys,
            refresh_interval=settings.identity_keys_refresh_seconds,
        )
        self._defaults = default_bounds(settings)
        self._audit_keys = settings.mac_keys()
        self._worker: Periodic | None = None
        self._checkpoints: Periodic | None = None
        self._chainer: Periodic | None = None

    async def start(self, server: grpc.aio.Server, resources: Resources) -> None:
        if self._audit_keys is None:
            # Without the key, whoever controls the database could rewrite the audit log
            # and recompute a chain that verifies: never serve like that.
            raise RuntimeError("AUDIT_MAC_KEYS is required to serve (deploy/README.md)")
        servicer = PolicyServicer(
            pool=resources.pool,
            settings=self._settings,
            verifier=self._verifier,
            clock=self._clock,
            defaults=self._defaults,
            audit_keys=self._audit_keys,
        )
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(servicer, server)
        self._worker = expiry_worker(
            resources.pool,
            self._audit_keys,
            self._clock,
            self._settings.expiry_interval_seconds,
            self._settings.expiry_batch_size,
        )
        self._worker.start()
        self._checkpoints = checkpoint_worker(
            resources.pool,
            self._audit_keys,
            self._clock,
            self._settings.audit_checkpoint_interval_seconds,
        )
        self._checkpoints.start()
        self._chainer = chaining.chain_worker(
            resources.pool,
            self._audit_keys,
            self._settings.audit_chain_interval_ms / 1000,
            self._settings.audit_chain_batch_size,
        )
        self._chainer.start()

    async def stop(self) -> None:
        """Stops the workers and closes the channel to identity."""
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self._checkpoints is not None:
            await self._checkpoints.stop()
            self._checkpoints = None
        if self._chainer is not None:
            await self._chainer.stop()
            self._chainer = None
        await tasks.bounded(self._identity_keys.close(), tasks.STOP_STEP_SECONDS, "identity")
