"""The billing gateway's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

from pydantic import Field, model_validator

from runtime.settings import EncryptionKeys, ServiceSettings


class BillingGatewaySettings(ServiceSettings):
    """Everything of ServiceSettings, plus Stripe, the other services and the workers."""

    grpc_port: int = Field(default=50063, ge=0, le=65535)
    # Keys that encrypt Stripe secret keys and webhook signing secrets at rest:
    # "k2:<base64 32 bytes>,k1:..."; the first is current.
    secrets_encryption_keys: EncryptionKeys
    # identity's gRPC address (host:port): assertion keys, tags, contacts.
    identity_target: str = "127.0.0.1:50061"
    # policy's gRPC address: Redeem, Commit and Release of grants.
    policy_target: str = "127.0.0.1:50062"
    # notifier's gRPC address: messages started by webhooks.
    notifier_target: str = "127.0.0.1:50064"
    # Stripe's API base: https://api.stripe.com, or the local emulator's URL.
    stripe_api_base: str = "https://api.stripe.com"
    # The Stripe API version every request pins (the SDK's own version when empty).
    stripe_api_version: str = ""
    # Seconds one Stripe HTTP request may take before it counts as a timeout.
    stripe_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retries of a Stripe call on 429, 5xx, connection errors and timeouts, by the gateway's
    # own deadline-aware loop (the SDK's own retries are set to 0: they ignore deadlines).
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    # First backoff between retries, in seconds (doubles, with jitter).
    stripe_retry_backoff_seconds: float = Field(default=0.2, gt=0)
    # Client-side requests per second per account, under Stripe's own limits.
    stripe_rate_limit_test: float = Field(default=25.0, gt=0)
    stripe_rate_limit_live: float = Field(default=100.0, gt=0)
    # Consecutive failures (5xx, 429, timeouts) that open an account's circuit breaker.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    # Seconds an open breaker refuses calls before one probe is let through.
    breaker_cooldown_seconds: float = Field(default=15.0, gt=0)
    # Webhook timestamps older or newer than this many seconds are refused.
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    # Seconds between polls of the webhook inbox when it was found empty.
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    # Concurrent webhook processors per replica (each holds one pool connection while it
    # works through a batch).
    webhook_workers: int = Field(default=3, ge=1, le=64)
    # Most events one worker claims (and commits) together.
    webhook_batch_size: int = Field(default=16, ge=1, le=500)
    # Events about different objects of one batch applied at once (their Stripe reads and
    # notifier calls overlap). 1: one after another, which measured best on 2 cores where the
    # worker is CPU-bound (more starves webhook ingestion in the same process).
    webhook_batch_concurrency: int = Field(default=1, ge=1, le=64)
    # Seconds a customer's message recipients (contacts in identity) are reused by the
    # webhook worker before being looked up again: one lookup per burst of events (0: every
    # message looks them up).
    webhook_recipients_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # Seconds between polls for due cancellations.
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    # Seconds between reconciliation passes over in-flight operations and unresolved grants.
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    # An operation in flight for longer than this many seconds is reconciled (looked up in
    # Stripe, its grant committed or released). It must exceed the longest a Stripe write can
    # take, or a replica could settle a write another replica is still making.
    reconcile_after_seconds: float = Field(default=60.0, ge=0)
    # Reads answer from the mirror of Stripe while what it holds was confirmed by Stripe (an
    # event, a read, a write, the backfill or a catch-up) within this many seconds, else from
    # Stripe; a workspace may set its own bound (UpdateMirrorSettings).
    mirror_max_age_seconds: int = Field(default=900, ge=1, le=7 * 86_400)
    # Objects per page of the backfill of a newly connected account (Stripe's list limit).
    mirror_backfill_page_size: int = Field(default=100, ge=1, le=100)
    # Backfill pages per second per replica: the backfill leaves the account's Stripe request
    # rate to live traffic.
    mirror_backfill_pages_per_second: float = Field(default=2.0, gt=0)
    # Seconds between catch-ups of a workspace through Stripe's events list (events a
    # webhook never delivered).
    mirror_catch_up_interval_seconds: float = Field(default=60.0, gt=0)
    # Each catch-up lists events from this many seconds before the last one reached: Stripe's
    # events list may show an event a little after its `created`.
    mirror_catch_up_overlap_seconds: int = Field(default=60, ge=0, le=86_400)
    # A confirmation email the notifier did not take (unreachable, rate-limited) is tried
    # again after this many seconds, doubling up to the max; the worker looks for due ones
    # every poll.
    confirmation_retry_seconds: float = Field(default=5.0, gt=0)
    confirmation_retry_max_seconds: float = Field(default=300.0, gt=0)
    confirmation_poll_seconds: float = Field(default=2.0, gt=0)
    # Whether the background workers run in this process (the tests start them by hand).
    run_workers: bool = True

    @model_validator(mode="after")
    def _reconcile_after_outlasts_a_write(self) -> BillingGatewaySettings:
        longest_write = self.stripe_timeout_seconds * (self.stripe_max_network_retries + 1)
        if self.reconcile_after_seconds and self.reconcile_after_seconds <= longest_write:
            raise ValueError(
                f"RECONCILE_AFTER_SECONDS ({self.reconcile_after_seconds}) must exceed the "
                f"longest Stripe write, {longest_write} s (timeout x attempts)"
            )
        return self
