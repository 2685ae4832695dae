"""Typed settings read from the environment; a missing required value fails at start."""

from __future__ import annotations

import re
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime import secretbox, service_auth

_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _encryption_keys(value: SecretStr) -> SecretStr:
    # A typo must fail at start, not at the first secret sealed or opened. The message
    # never repeats the value: it is key material.
    spec = value.get_secret_value()
    if spec:
        try:
            secretbox.SecretBox(spec)
        except ValueError:
            raise ValueError(
                "each key must be '<id>:<base64 of 32 bytes>', comma-separated, the current first"
            ) from None
    return value


# Keys that seal stored secrets, in the SECRETS_ENCRYPTION_KEYS form of runtime/secretbox.py
# ("k2:<base64 32 bytes>,k1:..."), checked when the settings are read; "" passes (a service
# that requires keys declares the field without a default).
EncryptionKeys = Annotated[SecretStr, AfterValidator(_encryption_keys)]


class ServiceSettings(BaseSettings):
    """Settings every service shares. Each field is read from the environment variable of
    the same name in upper case (``DATABASE_URL``, ``GRPC_PORT``, ...)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # PostgreSQL DSN the service runs with; required. The service keeps its tables in its own
    # schema. In production this is a login role that is a member of the service's group role
    # (``askvault_<service>_service``), which may only read and write rows, never change the
    # schema, and may only INSERT and SELECT an append-only table such as policy's audit log.
    database_url: SecretStr
    # PostgreSQL DSN of the schema's owner, used only to apply migrations (the ``migrate``
    # command and MIGRATE_ON_START); empty: DATABASE_URL migrates, as one role does both.
    migration_database_url: SecretStr = SecretStr("")
    # Address the gRPC server binds; port 0 picks a free port (tests).
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Port of the Prometheus /metrics endpoint; 0 disables it.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # OTLP gRPC endpoint for traces and metrics; empty disables export.
    otel_exporter_otlp_endpoint: str = ""
    # Log level of the JSON logs: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case).
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    # Seconds in-flight RPCs get to finish after SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = Field(default=10.0, gt=0)
    # Seconds to keep answering NOT_SERVING before draining, so load balancers notice.
    shutdown_delay_seconds: float = Field(default=0.0, ge=0)
    # Seconds after SIGTERM at which a shutdown that has not finished ends the process
    # (0: the delay, plus the grace, plus 15 s). Keep it under terminationGracePeriodSeconds.
    shutdown_deadline_seconds: float = Field(default=0.0, ge=0)
    # Size of the asyncpg pool.
    database_pool_min_size: int = Field(default=1, ge=0)
    database_pool_max_size: int = Field(default=10, ge=1)
    # Seconds after which the gRPC server asks a client to reconnect (GOAWAY), and the seconds
    # its calls in flight then get to finish: a client balancing over DNS round-robin only
    # looks the name up again when a connection ends, so without an age a replica added by
    # the autoscaler would get no call from clients already connected. 0 keeps connections.
    grpc_max_connection_age_seconds: float = Field(default=300.0, ge=0)
    grpc_max_connection_age_grace_seconds: float = Field(default=30.0, ge=0)
    # Calls the gRPC server serves at once (health checks aside); a call past it is refused at
    # once with RESOURCE_EXHAUSTED, reason OVERLOADED, before it claims anything, rather than
    # queued until its deadline passes. 0: no bound.
    grpc_max_in_flight: int = Field(default=128, ge=0)
    # A call whose remaining deadline is this short or shorter is refused (DEADLINE_EXCEEDED)
    # rather than started: it could not be answered in time. In seconds.
    grpc_min_deadline_seconds: float = Field(default=0.01, ge=0)
    # Seconds between database health probes.
    health_probe_interval_seconds: float = Field(default=2.0, gt=0)
    # Admin credentials (``authorization: Bearer <jwt>``) come from an identity provider:
    # the ``iss`` of its tokens; empty refuses every admin RPC. Its public keys are read from
    # ADMIN_JWKS_FILE, else ADMIN_JWKS_URL, else the issuer's OIDC discovery document.
    admin_issuer: str = ""
    admin_jwks_file: str = ""
    admin_jwks_url: str = ""
    # The ``aud`` an admin credential must carry (the provider's client or API id).
    admin_audience: str = "askvault-admin"
    # The claim (dotted path, e.g. ``realm_access.roles``) that must hold ADMIN_ROLE.
    admin_role_claim: str = "roles"
    admin_role: str = "askvault-admin"
    # The claim listing the workspaces the admin may act on ("*": every workspace).
    admin_workspaces_claim: str = "askvault_workspaces"
    # The longest an admin credential may live (exp - iat): a leaked one expires soon.
    admin_token_max_lifetime_seconds: int = Field(default=12 * 3600, gt=0, le=7 * 86400)
    # Apply migrations at start (``migrate`` applies them without serving).
    migrate_on_start: bool = True
    # This service's own Ed25519 private key (PKCS#8 PEM) that signs the credential it calls
    # the other services with, inline or as a file; empty: its calls carry no credential.
    service_signing_key: SecretStr = SecretStr("")
    service_signing_key_file: str = ""
    # The id of that key in the public keys: "<service>" or "<service>:<label>" during a
    # rotation; empty: the service's name.
    service_signing_key_id: str = ""
    # The public keys of the skill's services, a JWKS whose kids are as above, inline JSON or
    # a file. When set, every RPC except health, reflection and admin RPCs needs a credential
    # of an allowed caller, signed with that caller's own key; empty: the check is off.
    service_public_keys: str = ""
    service_public_keys_file: str = ""
    # TLS for the gRPC port: PEM certificate chain and key; empty serves plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # PEM CA that client certificates must chain to; set it to require mutual TLS.
    tls_client_ca_file: str = ""
    # PEM CA that verifies the servers this service calls; set it to call them over TLS
    # (the certificate and key above are then presented as this service's client identity).
    tls_ca_file: str = ""
    # SPIFFE trust domain of the services' client certificates ("askvault.example"); with
    # mutual TLS on, a caller may prove its name with a certificate whose one URI SAN is
    # spiffe://<trust domain>/askvault/<service>, checked against the same allow-lists.
    service_trust_domain: str = ""

    @model_validator(mode="after")
    def _service_keys_are_valid(self) -> ServiceSettings:
        if self.service_trust_domain and not _TRUST_DOMAIN.match(self.service_trust_domain):
            raise ValueError("SERVICE_TRUST_DOMAIN is a host name: lower-case a-z 0-9 . - _")
        if self.service_trust_domain and not self.tls_client_ca_file:
            # Without mutual TLS nobody verified the certificate's chain.
            raise ValueError("SERVICE_TRUST_DOMAIN needs mutual TLS (TLS_CLIENT_CA_FILE)")
        # A malformed key fails at start, not at the first call. The key id's service is
        # checked against the service's name when the service starts (the name is not known
        # here).
        try:
            service_auth.load_public_keys(self.service_public_keys, self.service_public_keys_file)
            signing_key = self.service_signing_key.get_secret_value()
            if signing_key or self.service_signing_key_file:
                service_auth.load_signing_key(
                    service_auth.service_of(self.service_signing_key_id or "unnamed"),
                    signing_key,
                    self.service_signing_key_file,
                    self.service_signing_key_id,
                )
        except OSError as error:
            raise ValueError(f"service keys: {error}") from None
        return self

    def migration_dsn(self) -> str:
        """The DSN that applies migrations: the owner's when MIGRATION_DATABASE_URL is set
        (the service's own role may not change the schema), else DATABASE_URL."""
        return (
            self.migration_database_url.get_secret_value() or self.database_url.get_secret_value()
        )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load(settings_class: type[SettingsT]) -> SettingsT:
    """Reads settings from the environment, exiting with a readable message when invalid."""
    try:
        return settings_class()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']).upper()}: {item['msg']}"
            for item in error.errors()
        )
        raise SystemExit(f"invalid configuration: {problems}") from None
