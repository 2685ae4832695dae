"""Policy's settings (environment variables of the same names, upper case)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from policy.domain.audit import MacKeys
from policy.domain.bounds import default_caps_spec, parse_caps
from policy.domain.periods import valid_time_zone
from runtime.settings import ServiceSettings


class PolicySettings(ServiceSettings):
    """Everything of ServiceSettings, plus policy's defaults and timings."""

    grpc_port: int = Field(default=50062, ge=0, le=65535)
    # Keys that link the audit chain with HMAC-SHA256 and MAC its checkpoints, never stored
    # in the database: "a2:<base64, 32+ bytes>,a1:..."; the first signs, all verify
    # (rotation). Required to serve (policy refuses to start without it: whoever owns the
    # database could otherwise rewrite the log and recompute a chain that verifies); the
    # ``migrate`` command does not need it, so the migration Job never holds it.
    audit_mac_keys: SecretStr = SecretStr("")
    # Set only where the audit log began before the keyed chain (its first entries are plain
    # SHA-256): such a prefix then verifies. Off, any plain entry is reported altered.
    audit_accepts_unkeyed_prefix: bool = False
    # Seconds between audit checkpoints: each workspace's chain head, MAC'd, written to the
    # logs when it moved since the last one; admins compare them with VerifyAuditCheckpoint.
    audit_checkpoint_interval_seconds: float = Field(default=300.0, gt=0)
    # Milliseconds between passes of the audit chainer, which links the entries decisions
    # recorded into each workspace's hash chain: the longest an entry waits unchained
    # (plus one pass). VerifyAuditChain and ListAuditEvents chain first, so they never wait.
    audit_chain_interval_ms: int = Field(default=250, ge=1, le=60_000)
    # Entries the chainer links per transaction.
    audit_chain_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # host:port of identity, whose GetVerificationKeys publishes the keys that verify
    # identity assertions. Empty is allowed only when the service is given a key source
    # directly (tests); then every assertion is refused as invalid.
    identity_target: str = ""
    # Seconds between two fetches of identity's keys when an unknown key id shows up.
    identity_keys_refresh_seconds: float = Field(default=10.0, gt=0)
    # Lifetime of a grant: the enforcement point must redeem it within this many seconds.
    grant_ttl_seconds: int = Field(default=120, ge=1, le=3600)
    # Lifetime of the grant an approved escalation carries. The billing gateway redeems it in
    # the very call that approves (CarryOutEscalation), so this bounds only the recovery of a
    # call that died in between (a crash, policy or Stripe unavailable, the breaker open): the
    # admin's retry of the same call, possibly the next working day. A day covers that; the
    # reservation (counted, never limited) is held meanwhile, and the gateway reads the
    # charge or subscription again before acting, so a late run never acts on stale facts.
    approval_grant_ttl_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    # Seconds between sweeps of the expiry worker.
    expiry_interval_seconds: float = Field(default=1.0, gt=0)
    # Grants one sweep expires per workspace and transaction.
    expiry_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Default automatic refund caps per visitor and period: "usd:50000,eur:45000" (minor
    # units). A currency without a cap escalates. The default covers the major currencies
    # (usd, eur, gbp, cad, aud, jpy, inr; see bounds.DEFAULT_REFUND_CAPS_MAJOR).
    default_refund_caps: str = Field(default_factory=default_caps_spec)
    # Default refund window: how old a charge may be, in seconds (14 days).
    default_refund_window_seconds: int = Field(default=14 * 86_400, ge=0)
    # Default plan changes per visitor and period.
    default_plan_changes_per_period: int = Field(default=3, ge=0)
    # Default resubscriptions (StartResubscription: a UPI / eMandate subscription moved by a
    # new one through Checkout) per visitor and period, counted apart from plan changes.
    default_resubscriptions_per_period: int = Field(default=2, ge=0)
    # Default cancellation grace, in seconds.
    default_cancellation_grace_seconds: int = Field(default=30, ge=0)
    # Kept for compatibility: every money action needs the person's confirmation whatever
    # these say (decisions.py, rule 7).
    default_confirm_refunds: bool = True
    default_confirm_plan_changes: bool = True
    # Default counter period: calendar_month, calendar_week or calendar_day (in the time zone).
    default_counter_period: str = Field(
        default="calendar_month", pattern="^calendar_(month|week|day)$"
    )

    # Default time zone of the counter periods (IANA name): a period starts at midnight there.
    # Each workspace may set its own (Bounds.time_zone).
    default_time_zone: str = "UTC"

    @field_validator("default_time_zone")
    @classmethod
    def _valid_time_zone(cls, value: str) -> str:
        if not valid_time_zone(value):
            raise ValueError(f"DEFAULT_TIME_ZONE {value!r} is not an IANA time zone")
        return value

    @field_validator("default_refund_caps")
    @classmethod
    def _valid_refund_caps(cls, value: str) -> str:
        parse_caps(value)  # fails at start, not at the first refund
        return value

    @field_validator("audit_mac_keys")
    @classmethod
    def _valid_mac_keys(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            MacKeys.parse(value.get_secret_value())  # fails at start, not at the first append
        return value

    def mac_keys(self) -> MacKeys | None:
        """The parsed audit MAC keys; None when AUDIT_MAC_KEYS is not set."""
        spec = self.audit_mac_keys.get_secret_value()
        if not spec:
            return None
        return MacKeys.parse(spec, accepts_unkeyed_prefix=self.audit_accepts_unkeyed_prefix)
