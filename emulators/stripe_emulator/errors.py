"""Stripe-shaped API errors: `{"error": {type, code, message, param}}` with the right status."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


class StripeError(Exception):
    """An error answered to the client exactly as Stripe shapes it."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: Json | None = None,
        headers: dict[str, str] | None = None,
        saves_idempotent_result: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        self.headers = headers or {}
        # Stripe stores an idempotent result only once the endpoint started executing:
        # card declines are replayed, parameter validation failures are not.
        self.saves_idempotent_result = saves_idempotent_result

    def body(self) -> Json:
        error: Json = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        error.update(self.extra)
        return {"error": error}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing_param(param: str) -> StripeError:
    return invalid_request(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def invalid_param(param: str, message: str, code: str = "parameter_invalid") -> StripeError:
    return invalid_request(message, param=param, code=code)


def no_such(object_label: str, object_id: str, param: str = "id") -> StripeError:
    return invalid_request(
        f"No such {object_label}: '{object_id}'", param=param, code="resource_missing", status=404
    )


def authentication_missing() -> StripeError:
    return StripeError(
        401,
        "invalid_request_error",
        "You did not provide an API key. You need to provide your API key in the Authorization "
        "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
    )


def authentication_invalid(api_key: str) -> StripeError:
    return StripeError(
        401,
        "invalid_request_error",
        f"Invalid API Key provided: {redact_key(api_key)}",
    )


def redact_key(api_key: str) -> str:
    """Stripe echoes only the prefix and the last four characters of a key."""
    if len(api_key) <= 12:
        return "*" * len(api_key)
    return api_key[:8] + "*" * (len(api_key) - 12) + api_key[-4:]


def card_declined(
    message: str,
    decline_code: str,
    *,
    charge_id: str | None,
    payment_intent: Json | None = None,
    code: str = "card_declined",
) -> StripeError:
    extra: Json = {}
    if charge_id is not None:
        extra["charge"] = charge_id
    if payment_intent is not None:
        extra["payment_intent"] = payment_intent
    return StripeError(
        402,
        "card_error",
        message,
        code=code,
        decline_code=decline_code,
        extra=extra,
        saves_idempotent_result=True,
    )
