"""The secrets that sign helpdesk hand-offs: a workspace's own, sealed at rest with
SECRETS_ENCRYPTION_KEYS and bound to the workspace, and the service's default one for
HELPDESK_WEBHOOK_URL. Setting one (an admin's SetHelpdeskWebhookSecret) replaces the
previous one, which is how a secret is rotated; the plaintext is never returned or logged."""

from __future__ import annotations

from notifier import settings_store
from notifier.channels import helpdesk
from notifier.domain.outbox import DeliveryFailure, FailureKind
from notifier.settings import NotifierSettings
from runtime import errors
from runtime.database import Connection
from runtime.secretbox import SecretBox


def box_of(settings: NotifierSettings) -> SecretBox | None:
    """The box that seals workspaces' secrets; None when SECRETS_ENCRYPTION_KEYS is unset."""
    keys = settings.secrets_encryption_keys.get_secret_value()
    return SecretBox(keys) if keys else None


def _bound_to(workspace_id: str) -> str:
    # A sealed secret copied to another workspace's row does not open there.
    return f"{workspace_id}/helpdesk_webhook_secret"


async def set_secret(
    connection: Connection, box: SecretBox | None, workspace_id: str, secret: str
) -> settings_store.WorkspaceSettingsRecord:
    """Stores (or with "" removes) the workspace's secret; INVALID_ARGUMENT for a malformed
    one, FAILED_PRECONDITION when the service has no key to seal it with."""
    check = errors.Validator()
    check.non_empty(workspace_id, "workspace_id")
    problem = helpdesk.secret_problem(secret) if secret else ""
    check.require(not problem, "secret", problem)
    check.check()
    if not secret:
        return await settings_store.set_helpdesk_webhook_secret(connection, workspace_id, None)
    if box is None:
        raise errors.ServiceError(
            errors.Kind.FAILED_PRECONDITION,
            "SECRETS_ENCRYPTION_KEYS_MISSING",
            "the notifier has no SECRETS_ENCRYPTION_KEYS to store the secret with",
        )
    sealed = box.seal(secret.encode(), _bound_to(workspace_id))
    return await settings_store.set_helpdesk_webhook_secret(connection, workspace_id, sealed)


def is_signed(record: settings_store.WorkspaceSettingsRecord, settings: NotifierSettings) -> bool:
    """Whether the workspace's hand-offs to its helpdesk webhook go signed."""
    if record.helpdesk_webhook_secret_sealed is not None:
        return True
    uses_default = not record.helpdesk_webhook_url or (
        record.helpdesk_webhook_url == settings.helpdesk_webhook_url
    )
    return uses_default and bool(settings.helpdesk_webhook_secret.get_secret_value())


def signing_secret(
    box: SecretBox | None,
    settings: NotifierSettings,
    workspace_id: str,
    sealed: bytes | None,
    webhook_url: str,
) -> str:
    """The secret that signs a hand-off to ``webhook_url``; "" sends it unsigned. A secret
    that cannot be opened fails the attempt instead of sending unsigned."""
    if sealed is not None:
        if box is None:
            raise DeliveryFailure(
                FailureKind.TRANSIENT,
                "the helpdesk signing secret needs SECRETS_ENCRYPTION_KEYS",
            )
        try:
            return box.open(sealed, _bound_to(workspace_id)).decode()
        except ValueError:
            raise DeliveryFailure(
                FailureKind.TRANSIENT,
                "the helpdesk signing secret does not open with SECRETS_ENCRYPTION_KEYS",
            ) from None
    # The default secret belongs to the default webhook: a workspace's own receiver never
    # gets hand-offs signed with a secret shared by every workspace.
    if webhook_url and webhook_url == settings.helpdesk_webhook_url:
        return settings.helpdesk_webhook_secret.get_secret_value()
    return ""
