"""VerifyVisitor: a visitor's user_hash or signed token checked against the workspace's
secrets, the visitor's contact created, updated or (re-)bound, and an identity assertion
signed for the other services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from askvault.identity.v1 import identity_pb2 as pb
from identity import convert, storage
from identity.domain import contacts, verification
from identity.settings import IdentitySettings
from identity.workspace_secrets import WorkspaceSecretStore
from runtime import assertions, ids
from runtime.convert import timestamp


def verification_keys(
    signing_keys: list[tuple[str, Ed25519PrivateKey]],
) -> list[pb.VerificationKey]:
    """The public halves of the assertion signing keys."""
    return [
        pb.VerificationKey(
            key_id=key_id,
            algorithm=assertions.ALGORITHM,
            public_key=private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
        )
        for key_id, private_key in signing_keys
    ]


def _rebinds(record: storage.ContactRecord, visitor: verification.VerifiedVisitor) -> bool:
    return contacts.needs_token_binding(
        record.stripe_customer_id, record.binding_source, visitor.stripe_customer_id
    )


class Visitors:
    """Verifies visitors and signs their assertions with the first of ``signing_keys``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: IdentitySettings,
        secrets: WorkspaceSecretStore,
        signing_keys: list[tuple[str, Ed25519PrivateKey]],
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._secrets = secrets
        self._signing_keys = signing_keys

    async def verify(self, request: pb.VerifyVisitorRequest) -> pb.VerifyVisitorResponse:
        """The visitor's contact and a fresh assertion; UNAUTHENTICATED for a bad proof."""
        purpose = verification.VISITOR_TOKEN if request.token else verification.USER_HASH
        secrets = await self._secrets.active(request.workspace_id, purpose)
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
            contact=convert.contact_pb(record),
            identity_assertion=token,
            assertion_expires_at=timestamp(expires_at),
            method=(
                pb.VERIFICATION_METHOD_TOKEN
                if visitor.method == "token"
                else pb.VERIFICATION_METHOD_USER_HASH
            ),
            customer_lookup=lookup,
        )

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
            if found is not None and current and not _rebinds(found, visitor):
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
                if _rebinds(record, visitor):
                    record = await storage.link_customer(
                        connection,
                        workspace_id,
                        record.contact_id,
                        visitor.stripe_customer_id,
                        contacts.TOKEN_CLAIM,
                    )
            return record
