"""What the CLI says when something is missing or refused, and its exit codes."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The exit codes scripts can rely on (docs/cli.md lists them)."""

    OK = 0
    # A refusal or error not listed below.
    ERROR = 1
    # A usage error: a missing or malformed option (no workspace, a bad amount).
    USAGE = 2
    # No admin credential was given or found.
    NO_CREDENTIALS = 3
    # The credential is expired or invalid (UNAUTHENTICATED).
    UNAUTHENTICATED = 4
    # The credential is valid but not an admin's of this workspace (PERMISSION_DENIED).
    PERMISSION_DENIED = 5
    # The service is unreachable, or its database, Stripe or key source is (UNAVAILABLE,
    # DEADLINE_EXCEEDED).
    UNAVAILABLE = 6
    # The service refused the request's content (INVALID_ARGUMENT).
    INVALID_ARGUMENT = 7
    # The object does not exist in this workspace (NOT_FOUND).
    NOT_FOUND = 8
    # The request conflicts with the current state (FAILED_PRECONDITION, ALREADY_EXISTS,
    # ABORTED): a second admin is needed, the escalation is no longer open, ...
    CONFLICT = 9


class CliError(Exception):
    """A one-line failure with its exit code and, from the server, the ErrorInfo reason and
    the fields at fault."""

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.ERROR,
        *,
        reason: str = "",
        code: str = "",
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.reason = reason
        self.code = code
        self.fields = fields or {}

    def as_dict(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "exit_code": int(self.exit_code),
                "code": self.code,
                "reason": self.reason,
                "fields": self.fields,
            }
        }
