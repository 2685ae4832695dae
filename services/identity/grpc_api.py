"""Identity's gRPC layer: checks admin callers, validates and maps messages; the rules live
in ``domain``, the use cases in their modules: VerifyVisitor in ``visitors``, the secrets in
``workspace_secrets``, contacts' reads in ``contact_reads``, LinkCustomer in ``linking``, the
tags in ``tagging`` and the workspace's settings in ``workspace_settings``."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import asyncpg
import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.identity.v1 import identity_pb2 as pb
from askvault.identity.v1 import identity_pb2_grpc
from identity import (
    contact_reads,
    convert,
    linking,
    tagging,
    visitors,
    workspace_settings,
)
from identity.domain import contacts
from identity.settings import IdentitySettings
from identity.workspace_secrets import WorkspaceSecretStore
from runtime import auth, errors
from runtime.secretbox import SecretBox

_MIN_SECRET_BYTES = 32


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Implements askvault.identity.v1.IdentityService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: IdentitySettings,
        secret_box: SecretBox,
        signing_keys: list[tuple[str, Ed25519PrivateKey]],
    ) -> None:
        self._pool = pool
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._secrets = WorkspaceSecretStore(pool, secret_box, settings)
        self._visitors = visitors.Visitors(pool, settings, self._secrets, signing_keys)
        # The public keys never change while the process runs: derived once.
        self._verification_keys = visitors.verification_keys(signing_keys)

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    # -- visitors --------------------------------------------------------------------------

    async def VerifyVisitor(
        self, request: pb.VerifyVisitorRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.VerifyVisitorResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(
            bool(request.user_id or request.email or request.token),
            "user_id",
            "user_id or email (or a token) is required",
        )
        check.require(
            bool(request.user_hash) != bool(request.token),
            "user_hash",
            "exactly one of user_hash and token is required",
        )
        check.require(len(request.user_id) <= 256, "user_id", "at most 256 characters")
        check.require(len(request.email) <= 320, "email", "at most 320 characters")
        check.require(len(request.token) <= 8192, "token", "at most 8192 characters")
        check.check()
        return await self._visitors.verify(request)

    async def GetVerificationKeys(
        self, request: pb.GetVerificationKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetVerificationKeysResponse:
        return pb.GetVerificationKeysResponse(keys=self._verification_keys)

    # -- contacts --------------------------------------------------------------------------

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetContactResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        check.check()
        record = await contact_reads.contact_or_not_found(
            self._pool, request.workspace_id, request.contact_id
        )
        return pb.GetContactResponse(contact=convert.contact_pb(record))

    async def FindContactsByCustomer(
        self, request: pb.FindContactsByCustomerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FindContactsByCustomerResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.stripe_customer_id, "stripe_customer_id")
        check.check()
        return await contact_reads.by_customer(
            self._pool, request.workspace_id, request.stripe_customer_id
        )

    async def LinkCustomer(
        self, request: pb.LinkCustomerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LinkCustomerResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        target = request.WhichOneof("target")
        check.require(
            target is not None,
            "target",
            "stripe_customer_id, email_match or metadata_match is set",
        )
        if target == "stripe_customer_id":
            check.require(
                request.stripe_customer_id.startswith("cus_"),
                "stripe_customer_id",
                "must be a Stripe customer id (cus_...)",
            )
        check.check()
        if target == "stripe_customer_id":
            # Choosing the customer outright is an owner's decision, never a service's.
            await self._admin(context, request.workspace_id)
        return await linking.link_customer(self._pool, request)

    async def UpdateTags(
        self, request: pb.UpdateTagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateTagsResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        selector = request.WhichOneof("selector")
        check.require(selector is not None, "selector", "contact_id or stripe_customer_id is set")
        check.require(request.HasField("source_time"), "source_time", "is required")
        check.require(
            request.customer_status in convert.STATUS_FROM_PB or request.customer_status == 0,
            "customer_status",
            "unknown value",
        )
        check.require(
            request.plan_tier in convert.TIER_FROM_PB or request.plan_tier == 0,
            "plan_tier",
            "unknown value",
        )
        check.check()
        update = contacts.TagUpdate(
            source_time=request.source_time.ToDatetime(UTC),
            customer_status=convert.STATUS_FROM_PB.get(request.customer_status),
            plan_tier=convert.TIER_FROM_PB.get(request.plan_tier),
            trial_ends=(
                request.trial_ends.ToDatetime(UTC) if request.HasField("trial_ends") else None
            ),
            set_trial_ends=request.set_trial_ends,
        )
        return await tagging.update_tags(self._pool, request, update)

    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckAccessResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        wanted = request.requirement
        check.require(
            all(status in convert.STATUS_FROM_PB for status in wanted.customer_statuses),
            "requirement.customer_statuses",
            "unknown value",
        )
        check.require(
            wanted.minimum_plan_tier in convert.TIER_FROM_PB or wanted.minimum_plan_tier == 0,
            "requirement.minimum_plan_tier",
            "unknown value",
        )
        check.check()
        requirement = contacts.Requirement(
            customer_statuses=frozenset(
                convert.STATUS_FROM_PB[s] for s in wanted.customer_statuses
            ),
            minimum_plan_tier=convert.TIER_FROM_PB.get(wanted.minimum_plan_tier, ""),
            require_active_trial=wanted.require_active_trial,
        )
        return await tagging.check_access(
            self._pool, request.workspace_id, request.contact_id, requirement
        )

    # -- admin -----------------------------------------------------------------------------

    async def AddSecret(
        self, request: pb.AddSecretRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AddSecretResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id", max_length=64)
        check.non_empty(request.key_id, "key_id", max_length=64)
        check.require(
            len(request.secret) >= _MIN_SECRET_BYTES,
            "secret",
            f"at least {_MIN_SECRET_BYTES} bytes",
        )
        check.require(
            request.purpose in convert.PURPOSE_FROM_PB,
            "purpose",
            "SECRET_PURPOSE_USER_HASH or SECRET_PURPOSE_VISITOR_TOKEN is required",
        )
        check.check()
        return await self._secrets.add(request, convert.PURPOSE_FROM_PB[request.purpose])

    async def RetireSecret(
        self, request: pb.RetireSecretRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetireSecretResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.key_id, "key_id")
        check.check()
        return await self._secrets.retire(request)

    async def ListSecrets(
        self, request: pb.ListSecretsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSecretsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await self._secrets.list(request.workspace_id)

    async def GetWorkspaceSettings(
        self, request: pb.GetWorkspaceSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWorkspaceSettingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await workspace_settings.get(self._pool, request.workspace_id)

    async def UpdateWorkspaceSettings(
        self,
        request: pb.UpdateWorkspaceSettingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.UpdateWorkspaceSettingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        wanted = request.settings.customer_metadata_key
        check.require(
            not wanted or bool(contacts.METADATA_KEY.match(wanted)),
            "settings.customer_metadata_key",
            "[A-Za-z0-9_-]{1,40}, or empty for none",
        )
        # The self-serve prices are policy's bounds now (ProposeBoundsChange): a list sent here
        # is refused rather than dropped, so nobody believes it took effect.
        check.require(
            not request.settings.self_serve_price_ids,  # deprecated field
            "settings.self_serve_price_ids",
            "moved to policy's bounds (Bounds.self_serve_price_ids, ProposeBoundsChange)",
        )
        check.check()
        return await workspace_settings.update(self._pool, self._secrets, request)

    async def ListLegacyBindings(
        self, request: pb.ListLegacyBindingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListLegacyBindingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await contact_reads.legacy_bindings(self._pool, request)
