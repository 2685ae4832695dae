"""Identity's gRPC layer: validates and maps messages; the rules live in ``domain``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.identity.v1 import identity_pb2 as pb
from askvault.identity.v1 import identity_pb2_grpc
from identity import storage
from identity.domain import contacts, verification
from identity.secret_cache import SecretCache, WorkspaceSecrets
from identity.settings import IdentitySettings
from runtime import assertions, auth, convert, errors, idempotency, ids, paging
from runtime.database import Connection
from runtime.secretbox import SecretBox

_STATUS_TO_PB = {
    "active": pb.CUSTOMER_STATUS_ACTIVE,
    "trialing": pb.CUSTOMER_STATUS_TRIALING,
    "past_due": pb.CUSTOMER_STATUS_PAST_DUE,
    "canceled": pb.CUSTOMER_STATUS_CANCELED,
}
_STATUS_FROM_PB = {value: key for key, value in _STATUS_TO_PB.items()}
_TIER_TO_PB = {
    "free": pb.PLAN_TIER_FREE,
    "starter": pb.PLAN_TIER_STARTER,
    "growth": pb.PLAN_TIER_GROWTH,
    "business": pb.PLAN_TIER_BUSINESS,
    "enterprise": pb.PLAN_TIER_ENTERPRISE,
}
_TIER_FROM_PB = {value: key for key, value in _TIER_TO_PB.items()}
_PURPOSE_TO_PB = {
    verification.USER_HASH: pb.SECRET_PURPOSE_USER_HASH,
    verification.VISITOR_TOKEN: pb.SECRET_PURPOSE_VISITOR_TOKEN,
}
_PURPOSE_FROM_PB = {value: key for key, value in _PURPOSE_TO_PB.items()}
_BINDING_TO_PB = {
    contacts.SIGNED_EMAIL: pb.BINDING_SOURCE_SIGNED_EMAIL,
    contacts.TOKEN_CLAIM: pb.BINDING_SOURCE_TOKEN_CLAIM,
    contacts.CUSTOMER_METADATA: pb.BINDING_SOURCE_CUSTOMER_METADATA,
    contacts.ADMIN: pb.BINDING_SOURCE_ADMIN,
    contacts.LEGACY_UNSIGNED: pb.BINDING_SOURCE_LEGACY_UNSIGNED,
}
_MIN_SECRET_BYTES = 32
_LEGACY_PAGE_DEFAULT = 50
_LEGACY_PAGE_MAX = 200
# How many prices a workspace may offer for self-serve plan changes (the Customer Portal
# allows 10 products with up to 20 prices; a chat offer names far fewer).


def _contact_pb(record: storage.ContactRecord) -> pb.Contact:
    tags = record.tags
    return pb.Contact(
        workspace_id=record.workspace_id,
        contact_id=record.contact_id,
        user_id=record.user_id,
        email=record.email,
        stripe_customer_id=record.stripe_customer_id,
        tags=pb.ContactTags(
            customer_status=_STATUS_TO_PB.get(tags.customer_status, pb.CUSTOMER_STATUS_UNSPECIFIED),
            plan_tier=_TIER_TO_PB.get(tags.plan_tier, pb.PLAN_TIER_UNSPECIFIED),
            trial_ends=convert.timestamp(tags.trial_ends),
            customer_status_updated_at=convert.timestamp(tags.customer_status_at),
            plan_tier_updated_at=convert.timestamp(tags.plan_tier_at),
            trial_ends_updated_at=convert.timestamp(tags.trial_ends_at),
        ),
        created_at=convert.timestamp(record.created_at),
        claimed_email=record.claimed_email,
        binding_source=_BINDING_TO_PB.get(record.binding_source, pb.BINDING_SOURCE_UNSPECIFIED),
    )


def _settings_pb(settings: storage.WorkspaceSettings) -> pb.WorkspaceSettings:
    return pb.WorkspaceSettings(customer_metadata_key=settings.customer_metadata_key)


def _sealing_context(workspace_id: str, purpose: str, key_id: str) -> str:
    # Each purpose has its own context: a user_hash secret's ciphertext does not open as a
    # token secret even if a row's purpose were changed in the database.
    return f"{workspace_id}/hmac/{purpose}/{key_id}"


def _secret_pb(record: storage.SecretRecord) -> pb.SecretMetadata:
    return pb.SecretMetadata(
        key_id=record.key_id,
        created_at=convert.timestamp(record.created_at),
        retired_at=convert.timestamp(record.retired_at),
        active=record.retired_at is None,
        purpose=_PURPOSE_TO_PB.get(record.purpose, pb.SECRET_PURPOSE_UNSPECIFIED),
    )


def _unknown_workspace() -> errors.ServiceError:
    # Same reason as a bad hash would be misleading; an unknown workspace is its own reason,
    # and still says nothing about any secret.
    return errors.ServiceError(
        errors.Kind.UNAUTHENTICATED, "WORKSPACE_NOT_FOUND", "unknown workspace"
    )


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
        self._settings = settings
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._secret_box = secret_box
        self._signing_keys = signing_keys
        self._secrets = SecretCache(
            ttl_seconds=settings.secret_cache_ttl_seconds,
            max_entries=settings.secret_cache_max_entries,
        )
        # The public keys never change while the process runs: derived once.
        self._verification_keys = [
            pb.VerificationKey(
                key_id=key_id,
                algorithm=assertions.ALGORITHM,
                public_key=private_key.public_key().public_bytes(
                    serialization.Encoding.Raw, serialization.PublicFormat.Raw
                ),
            )
            for key_id, private_key in signing_keys
        ]

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _active_secrets(self, workspace_id: str, purpose: str) -> WorkspaceSecrets:
        """The active secrets of one purpose, opened, and the workspace's customer metadata
        key: from memory when loaded less than SECRET_CACHE_TTL_SECONDS ago."""

        async def load() -> WorkspaceSecrets | None:
            async with self._pool.acquire() as connection:
                found = await storage.active_secrets(connection, workspace_id, purpose)
            if found is None:
                return None
            return WorkspaceSecrets.of(
                {
                    key_id: self._secret_box.open(
                        sealed.ciphertext,
                        _sealing_context(workspace_id, purpose, key_id)
                        if sealed.purpose_sealed
                        # Sealed before purposes existed: only user_hash secrets (migration
                        # 0002).
                        else f"{workspace_id}/hmac/{key_id}",
                    )
                    for key_id, sealed in found.sealed.items()
                },
                found.customer_metadata_key,
            )

        secrets = await self._secrets.get(workspace_id, purpose, load)
        if secrets is None:
            raise _unknown_workspace()
        return secrets

    async def _visitor_contact(
        self,
        workspace_id: str,
        visitor: verification.VerifiedVisitor,
        emails: contacts.SignedEmails,
    ) -> storage.ContactRecord:
        """The verified visitor's contact, created, updated or (re-)bound as this visit
        requires. A visitor seen before with the same emails and binding costs one read."""
        email_normalized = contacts.normalize_email(emails.signed)
        async with self._pool.acquire() as connection:
            found = await storage.find_visitor_contact(
                connection, workspace_id, visitor.user_id, email_normalized
            )
            current = found is not None and contacts.is_current(
                found.email, found.claimed_email, emails
            )
            if found is not None and current and not self._rebinds(found, visitor):
                return found
            async with connection.transaction():
                record = (
                    found
                    if found is not None and current
                    else await storage.upsert_contact(
                        connection,
                        workspace_id,
                        ids.new_id("ct"),
                        visitor.user_id,
                        emails.signed,
                        email_normalized,
                        emails.claimed,
                    )
                )
                if self._rebinds(record, visitor):
                    record = await storage.link_customer(
                        connection,
                        workspace_id,
                        record.contact_id,
                        visitor.stripe_customer_id,
                        contacts.TOKEN_CLAIM,
                    )
            return record

    @staticmethod
    def _rebinds(record: storage.ContactRecord, visitor: verification.VerifiedVisitor) -> bool:
        return contacts.needs_token_binding(
            record.stripe_customer_id, record.binding_source, visitor.stripe_customer_id
        )

    async def _contact_or_not_found(
        self, connection: Connection, workspace_id: str, contact_id: str
    ) -> storage.ContactRecord:
        record = await storage.get_contact(connection, workspace_id, contact_id, for_update=True)
        if record is None:
            raise errors.not_found("contact")
        return record

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
        purpose = verification.VISITOR_TOKEN if request.token else verification.USER_HASH
        secrets = await self._active_secrets(request.workspace_id, purpose)
        if request.token:
            visitor = verification.verify_token(
                request.token,
                secrets.opened,
                leeway_seconds=self._settings.token_leeway_seconds,
                max_lifetime_seconds=self._settings.token_max_lifetime_seconds,
                expected_user_id=request.user_id,
            )
        else:
            visitor = verification.verify_user_hash(
                secrets.opened, request.user_id, request.email, request.user_hash
            )
        emails = contacts.split_emails(
            visitor.method, visitor.user_id, request.email, visitor.email
        )
        record = await self._visitor_contact(request.workspace_id, visitor, emails)
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + timedelta(seconds=self._settings.assertion_ttl_seconds)
        key_id, private_key = self._signing_keys[0]
        token = assertions.issue(
            private_key,
            key_id,
            assertions.Assertion(
                assertion_id=ids.new_id("as"),
                workspace_id=record.workspace_id,
                contact_id=record.contact_id,
                user_id=record.user_id,
                email=record.email,
                stripe_customer_id=record.stripe_customer_id,
                issued_at=now,
                expires_at=expires_at,
            ),
        )
        lookup = None
        if not record.stripe_customer_id:
            lookup = pb.CustomerLookup(
                email=record.email,
                metadata_key=secrets.customer_metadata_key if record.user_id else "",
                metadata_value=record.user_id if secrets.customer_metadata_key else "",
            )
        return pb.VerifyVisitorResponse(
            contact=_contact_pb(record),
            identity_assertion=token,
            assertion_expires_at=convert.timestamp(expires_at),
            method=(
                pb.VERIFICATION_METHOD_TOKEN
                if visitor.method == "token"
                else pb.VERIFICATION_METHOD_USER_HASH
            ),
            customer_lookup=lookup,
        )

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
        async with self._pool.acquire() as connection:
            record = await storage.get_contact(connection, request.workspace_id, request.contact_id)
        if record is None:
            raise errors.not_found("contact")
        return pb.GetContactResponse(contact=_contact_pb(record))

    async def FindContactsByCustomer(
        self, request: pb.FindContactsByCustomerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FindContactsByCustomerResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.stripe_customer_id, "stripe_customer_id")
        check.check()
        async with self._pool.acquire() as connection:
            records = await storage.contacts_by_customer(
                connection, request.workspace_id, request.stripe_customer_id
            )
        return pb.FindContactsByCustomerResponse(contacts=[_contact_pb(r) for r in records])

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

        async def link(connection: Connection) -> pb.LinkCustomerResponse:
            record = await self._contact_or_not_found(
                connection, request.workspace_id, request.contact_id
            )
            if target == "stripe_customer_id":
                customer_id, source = request.stripe_customer_id, contacts.ADMIN
            elif target == "email_match":
                customer_id = contacts.match_customer(
                    record.email,
                    [
                        contacts.Candidate(c.stripe_customer_id, c.email)
                        for c in request.email_match.candidates
                    ],
                )
                source = contacts.rebinding_source(
                    record.stripe_customer_id,
                    record.binding_source,
                    customer_id,
                    contacts.SIGNED_EMAIL,
                )
            else:
                configured = await storage.get_customer_metadata_key(
                    connection, request.workspace_id
                )
                customer_id = contacts.match_by_metadata(
                    record.user_id,
                    request.metadata_match.metadata_key,
                    configured or "",
                    [
                        contacts.Candidate(c.stripe_customer_id, c.email, c.metadata_value)
                        for c in request.metadata_match.candidates
                    ],
                )
                source = contacts.rebinding_source(
                    record.stripe_customer_id,
                    record.binding_source,
                    customer_id,
                    contacts.CUSTOMER_METADATA,
                )
            linked = record
            if (customer_id, source) != (record.stripe_customer_id, record.binding_source):
                linked = await storage.link_customer(
                    connection, request.workspace_id, request.contact_id, customer_id, source
                )
            return pb.LinkCustomerResponse(contact=_contact_pb(linked))

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.LinkCustomerResponse,
            link,
        )

    async def UpdateTags(
        self, request: pb.UpdateTagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateTagsResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        selector = request.WhichOneof("selector")
        check.require(selector is not None, "selector", "contact_id or stripe_customer_id is set")
        check.require(request.HasField("source_time"), "source_time", "is required")
        check.require(
            request.customer_status in _STATUS_FROM_PB or request.customer_status == 0,
            "customer_status",
            "unknown value",
        )
        check.require(
            request.plan_tier in _TIER_FROM_PB or request.plan_tier == 0,
            "plan_tier",
            "unknown value",
        )
        check.check()
        update = contacts.TagUpdate(
            source_time=request.source_time.ToDatetime(UTC),
            customer_status=_STATUS_FROM_PB.get(request.customer_status),
            plan_tier=_TIER_FROM_PB.get(request.plan_tier),
            trial_ends=(
                request.trial_ends.ToDatetime(UTC) if request.HasField("trial_ends") else None
            ),
            set_trial_ends=request.set_trial_ends,
        )

        async def apply(connection: Connection) -> pb.UpdateTagsResponse:
            if selector == "contact_id":
                selected = [
                    await self._contact_or_not_found(
                        connection, request.workspace_id, request.contact_id
                    )
                ]
            else:
                selected = await storage.contacts_by_customer(
                    connection, request.workspace_id, request.stripe_customer_id, for_update=True
                )
            updated = []
            for record in selected:
                tags = contacts.apply_update(record.tags, update)
                if tags != record.tags:
                    record = await storage.save_tags(
                        connection, record.workspace_id, record.contact_id, tags
                    )
                updated.append(_contact_pb(record))
            return pb.UpdateTagsResponse(contacts=updated)

        return await idempotency.run_once(
            self._pool,
            request.workspace_id,
            request.idempotency_key,
            request,
            pb.UpdateTagsResponse,
            apply,
        )

    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckAccessResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.contact_id, "contact_id")
        wanted = request.requirement
        check.require(
            all(status in _STATUS_FROM_PB for status in wanted.customer_statuses),
            "requirement.customer_statuses",
            "unknown value",
        )
        check.require(
            wanted.minimum_plan_tier in _TIER_FROM_PB or wanted.minimum_plan_tier == 0,
            "requirement.minimum_plan_tier",
            "unknown value",
        )
        check.check()
        async with self._pool.acquire() as connection:
            record = await storage.get_contact(connection, request.workspace_id, request.contact_id)
        if record is None:
            raise errors.not_found("contact")
        requirement = contacts.Requirement(
            customer_statuses=frozenset(_STATUS_FROM_PB[s] for s in wanted.customer_statuses),
            minimum_plan_tier=_TIER_FROM_PB.get(wanted.minimum_plan_tier, ""),
            require_active_trial=wanted.require_active_trial,
        )
        unmet = contacts.unmet_requirements(record.tags, requirement, datetime.now(UTC))
        return pb.CheckAccessResponse(allowed=not unmet, unmet=unmet)

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
            request.purpose in _PURPOSE_FROM_PB,
            "purpose",
            "SECRET_PURPOSE_USER_HASH or SECRET_PURPOSE_VISITOR_TOKEN is required",
        )
        check.check()
        purpose = _PURPOSE_FROM_PB[request.purpose]
        sealed = self._secret_box.seal(
            request.secret, _sealing_context(request.workspace_id, purpose, request.key_id)
        )

        async def add(connection: Connection) -> pb.AddSecretResponse:
            record = await storage.insert_secret(
                connection, request.workspace_id, request.key_id, sealed, purpose
            )
            if record is None:
                raise errors.ServiceError(
                    errors.Kind.ALREADY_EXISTS, "ALREADY_EXISTS", "the key id is taken"
                )
            return pb.AddSecretResponse(secret=_secret_pb(record))

        try:
            return await idempotency.run_once(
                self._pool,
                request.workspace_id,
                request.idempotency_key,
                request,
                pb.AddSecretResponse,
                add,
            )
        finally:
            # After the commit (or a failure): this replica serves the change at once.
            self._secrets.invalidate(request.workspace_id)

    async def RetireSecret(
        self, request: pb.RetireSecretRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetireSecretResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.key_id, "key_id")
        check.check()

        async def retire(connection: Connection) -> pb.RetireSecretResponse:
            record = await storage.retire_secret(connection, request.workspace_id, request.key_id)
            if record is None:
                raise errors.not_found("secret")
            return pb.RetireSecretResponse(secret=_secret_pb(record))

        try:
            return await idempotency.run_once(
                self._pool,
                request.workspace_id,
                request.idempotency_key,
                request,
                pb.RetireSecretResponse,
                retire,
            )
        finally:
            # After the commit (or a failure): this replica serves the change at once.
            self._secrets.invalidate(request.workspace_id)

    async def ListSecrets(
        self, request: pb.ListSecretsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSecretsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        async with self._pool.acquire() as connection:
            records = await storage.list_secrets(connection, request.workspace_id)
        return pb.ListSecretsResponse(secrets=[_secret_pb(r) for r in records])

    async def GetWorkspaceSettings(
        self, request: pb.GetWorkspaceSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetWorkspaceSettingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        async with self._pool.acquire() as connection:
            found = await storage.get_workspace_settings(connection, request.workspace_id)
        if found is None:
            raise errors.not_found("workspace", "WORKSPACE_NOT_FOUND")
        return pb.GetWorkspaceSettingsResponse(settings=_settings_pb(found))

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
        settings = storage.WorkspaceSettings(wanted)

        async def update(connection: Connection) -> pb.UpdateWorkspaceSettingsResponse:
            stored = await storage.set_workspace_settings(
                connection, request.workspace_id, settings
            )
            if stored is None:
                raise errors.not_found("workspace", "WORKSPACE_NOT_FOUND")
            return pb.UpdateWorkspaceSettingsResponse(settings=_settings_pb(stored))

        try:
            return await idempotency.run_once(
                self._pool,
                request.workspace_id,
                request.idempotency_key,
                request,
                pb.UpdateWorkspaceSettingsResponse,
                update,
            )
        finally:
            # After the commit (or a failure): this replica serves the change at once.
            self._secrets.invalidate(request.workspace_id)

    async def ListLegacyBindings(
        self, request: pb.ListLegacyBindingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListLegacyBindingsResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        size = paging.page_size(request.page_size, _LEGACY_PAGE_DEFAULT, _LEGACY_PAGE_MAX)
        after = paging.decode_cursor(request.page_token)
        async with self._pool.acquire() as connection:
            records = await storage.legacy_bindings(
                connection, request.workspace_id, after, size + 1
            )
        page, more = records[:size], len(records) > size
        return pb.ListLegacyBindingsResponse(
            contacts=[_contact_pb(r) for r in page],
            next_page_token=(
                paging.encode_cursor(page[-1].created_at, page[-1].contact_id) if more else ""
            ),
        )
