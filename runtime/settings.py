"""Typed settings read from the environment; a missing required value fails at start."""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Log level of the JSON logs.
    log_level: str = "INFO"
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
    # Seconds between database health probes.
    health_probe_interval_seconds: float = Field(default=2.0, gt=0)
    # HS256 key that signs admin credentials (``authorization: Bearer <jwt>``); empty
    # refuses every admin RPC.
    admin_token_secret: SecretStr = SecretStr("")
    # Apply migrations at start (``migrate`` applies them without serving).
    migrate_on_start: bool = True
    # HS256 key shared by the skill's services to sign service credentials; when set, every
    # RPC except health, reflection and admin RPCs needs a credential of an allowed caller.
    service_token_secret: SecretStr = SecretStr("")
    # TLS for the gRPC port: PEM certificate chain and key; empty serves plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # PEM CA that client certificates must chain to; set it to require mutual TLS.
    tls_client_ca_file: str = ""
    # PEM CA that verifies the servers this service calls; set it to call them over TLS
    # (the certificate and key above are then presented as this service's client identity).
    tls_ca_file: str = ""

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
