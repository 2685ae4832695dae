"""Notifier's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from notifier.channels import helpdesk
from runtime.settings import EncryptionKeys, ServiceSettings

_GRAPH_API_VERSION = re.compile(r"^v\d{1,3}\.\d{1,2}$")


class NotifierSettings(ServiceSettings):
    """Everything of ServiceSettings, plus the providers, the outbox workers and the limits."""

    grpc_port: int = Field(default=50064, ge=0, le=65535)

    # -- email (SMTP) -----------------------------------------------------------------------
    # SMTP server that relays the notifier's email.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    # Upgrade the connection with STARTTLS (required when the server offers it for auth).
    smtp_starttls: bool = False
    # Connect with implicit TLS (port 465 style) instead of plain TCP.
    smtp_use_tls: bool = False
    # Credentials for SMTP AUTH; an empty username sends without authenticating.
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    # Seconds an SMTP connection or command may take before the attempt counts as failed.
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Idle SMTP connections kept open between messages (0: a new connection per message).
    smtp_idle_connections: int = Field(default=8, ge=0, le=256)
    # Sender address and display name of workspaces that set none.
    default_from_address: str = "billing@askvault.local"
    default_sender_name: str = "Billing"
    # Right-hand side of the deterministic Message-ID "<message id@domain>".
    message_id_domain: str = "notifier.askvault.dev"
    # Attachments are fetched at send time; larger files fail the message for good.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Seconds to fetch one attachment (or to post one helpdesk webhook).
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    # -- WhatsApp Cloud API -----------------------------------------------------------------
    # Base URL of the Graph API (the emulator's URL locally).
    whatsapp_base_url: str = "https://graph.facebook.com"
    # Bearer token of the WhatsApp Business account (system user token).
    whatsapp_access_token: SecretStr = SecretStr("")
    # Graph API version in the path ("v26.0", released July 2026; Meta supports a version
    # for about two years, so move it on with the changelog).
    whatsapp_api_version: str = "v26.0"
    # Phone number id of workspaces that set none; empty means WhatsApp is off for them.
    whatsapp_phone_number_id: str = ""
    # Language code of the approved message templates.
    whatsapp_template_language: str = "en"
    # Seconds a WhatsApp API call may take.
    whatsapp_timeout_seconds: float = Field(default=10.0, gt=0)

    # -- outbox workers ---------------------------------------------------------------------
    # Worker loops started by this process; 0 runs the API only (workers elsewhere).
    worker_count: int = Field(default=2, ge=0, le=64)
    # Deliveries in flight per worker loop (a semaphore bounds them).
    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    # Seconds between polls when the outbox had nothing due.
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    # Attempts before a message is dead-lettered (fallbacks to email included).
    max_attempts: int = Field(default=8, ge=1, le=100)
    # Exponential backoff: base * 2^(attempt-1), at most cap, with jitter; in seconds.
    retry_backoff_base_seconds: float = Field(default=2.0, gt=0)
    retry_backoff_cap_seconds: float = Field(default=900.0, gt=0)
    # Seconds a claimed message stays leased to its worker; after that another worker
    # claims it again (a worker that died loses nothing). Must outlast one delivery.
    lease_seconds: float = Field(default=120.0, gt=0)
    # WhatsApp statuses that arrive before their send is recorded wait for it (parked): at
    # most this many at a time, each at most this many seconds (a status of a message this
    # notifier never sent would otherwise wait forever).
    parked_statuses_max: int = Field(default=10_000, ge=0)
    parked_status_ttl_seconds: float = Field(default=3600.0, gt=0)
    # A stopping notifier lets deliveries in flight finish (up to 0.75 of the lease), so its
    # stuck-shutdown deadline is longer than the other services' (runtime setting).
    shutdown_deadline_seconds: float = Field(default=125.0, ge=0)

    # -- limits and hand-offs ---------------------------------------------------------------
    # Messages per contact and per workspace in any hour (a sliding window), for workspaces
    # that set none.
    default_contact_hourly_limit: int = Field(default=20, ge=1)
    default_workspace_hourly_limit: int = Field(default=5000, ge=1)
    # Where hand-offs go when the workspace sets nothing: an agent inbox and/or a webhook.
    agent_inbox_address: str = ""
    helpdesk_webhook_url: str = ""
    # The secret ("whsec_<base64>") that signs hand-offs posted to HELPDESK_WEBHOOK_URL
    # (Standard Webhooks headers); empty posts them unsigned. A workspace's own webhook is
    # signed with its own secret (SetHelpdeskWebhookSecret), never with this one.
    helpdesk_webhook_secret: SecretStr = SecretStr("")
    # Keys that seal the workspaces' helpdesk signing secrets at rest ("k2:<base64 32
    # bytes>,k1:...", the first current); empty: no workspace can store a secret.
    secrets_encryption_keys: EncryptionKeys = SecretStr("")

    @field_validator("whatsapp_api_version")
    @classmethod
    def _graph_api_version(cls, value: str) -> str:
        if not _GRAPH_API_VERSION.match(value):
            raise ValueError("a Graph API version such as 'v26.0'")
        return value

    @field_validator("helpdesk_webhook_secret")
    @classmethod
    def _helpdesk_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret:
            problem = helpdesk.secret_problem(secret)
            if problem:
                raise ValueError(problem)
        return value

    @property
    def delivery_deadline_seconds(self) -> float:
        """Seconds one delivery attempt may take in all before the worker abandons it; a
        quarter of the lease stays as margin so that a live worker never outlives it."""
        return self.lease_seconds * 0.75

    @model_validator(mode="after")
    def _lease_outlasts_delivery(self) -> Self:
        # A lease shorter than one provider call would let a second worker claim a message
        # the first is still delivering, and send it twice.
        longest = max(
            self.smtp_timeout_seconds, self.whatsapp_timeout_seconds, self.http_timeout_seconds
        )
        if self.delivery_deadline_seconds <= longest:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must be more than 4/3 of the longest"
                f" provider timeout ({longest} s)"
            )
        return self
