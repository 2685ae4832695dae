"""Identity's messages: the proto enums' domain values and the proto forms of stored rows."""

from __future__ import annotations

from askvault.identity.v1 import identity_pb2 as pb
from identity import storage
from identity.domain import contacts, verification
from runtime import convert

STATUS_TO_PB = {
    "active": pb.CUSTOMER_STATUS_ACTIVE,
    "trialing": pb.CUSTOMER_STATUS_TRIALING,
    "past_due": pb.CUSTOMER_STATUS_PAST_DUE,
    "canceled": pb.CUSTOMER_STATUS_CANCELED,
}
STATUS_FROM_PB = {value: key for key, value in STATUS_TO_PB.items()}
TIER_TO_PB = {
    "free": pb.PLAN_TIER_FREE,
    "starter": pb.PLAN_TIER_STARTER,
    "growth": pb.PLAN_TIER_GROWTH,
    "business": pb.PLAN_TIER_BUSINESS,
    "enterprise": pb.PLAN_TIER_ENTERPRISE,
}
TIER_FROM_PB = {value: key for key, value in TIER_TO_PB.items()}
PURPOSE_TO_PB = {
    verification.USER_HASH: pb.SECRET_PURPOSE_USER_HASH,
    verification.VISITOR_TOKEN: pb.SECRET_PURPOSE_VISITOR_TOKEN,
}
PURPOSE_FROM_PB = {value: key for key, value in PURPOSE_TO_PB.items()}
BINDING_TO_PB = {
    contacts.SIGNED_EMAIL: pb.BINDING_SOURCE_SIGNED_EMAIL,
    contacts.TOKEN_CLAIM: pb.BINDING_SOURCE_TOKEN_CLAIM,
    contacts.CUSTOMER_METADATA: pb.BINDING_SOURCE_CUSTOMER_METADATA,
    contacts.ADMIN: pb.BINDING_SOURCE_ADMIN,
    contacts.LEGACY_UNSIGNED: pb.BINDING_SOURCE_LEGACY_UNSIGNED,
}


def contact_pb(record: storage.ContactRecord) -> pb.Contact:
    """The proto form of a stored contact."""
    tags = record.tags
    return pb.Contact(
        workspace_id=record.workspace_id,
        contact_id=record.contact_id,
        user_id=record.user_id,
        email=record.email,
        stripe_customer_id=record.stripe_customer_id,
        tags=pb.ContactTags(
            customer_status=STATUS_TO_PB.get(tags.customer_status, pb.CUSTOMER_STATUS_UNSPECIFIED),
            plan_tier=TIER_TO_PB.get(tags.plan_tier, pb.PLAN_TIER_UNSPECIFIED),
            trial_ends=convert.timestamp(tags.trial_ends),
            customer_status_updated_at=convert.timestamp(tags.customer_status_at),
            plan_tier_updated_at=convert.timestamp(tags.plan_tier_at),
            trial_ends_updated_at=convert.timestamp(tags.trial_ends_at),
        ),
        created_at=convert.timestamp(record.created_at),
        claimed_email=record.claimed_email,
        binding_source=BINDING_TO_PB.get(record.binding_source, pb.BINDING_SOURCE_UNSPECIFIED),
    )


def settings_pb(settings: storage.WorkspaceSettings) -> pb.WorkspaceSettings:
    """The proto form of a workspace's settings."""
    return pb.WorkspaceSettings(customer_metadata_key=settings.customer_metadata_key)


def secret_pb(record: storage.SecretRecord) -> pb.SecretMetadata:
    """What may be said of a stored secret (never the secret)."""
    return pb.SecretMetadata(
        key_id=record.key_id,
        created_at=convert.timestamp(record.created_at),
        retired_at=convert.timestamp(record.retired_at),
        active=record.retired_at is None,
        purpose=PURPOSE_TO_PB.get(record.purpose, pb.SECRET_PURPOSE_UNSPECIFIED),
    )
