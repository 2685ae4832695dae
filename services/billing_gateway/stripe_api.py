"""Every call to Stripe goes through here: one SDK client per account, a client-side rate
limit, a circuit breaker, retries of 429/5xx/timeouts within the caller's deadline, and
Stripe errors mapped to our statuses and reasons.

Idempotency keys are ours (derived from the ledger's operation id and passed explicitly),
never the SDK's automatic in-memory ones, so a retry after a crash reuses the same key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from billing_gateway import gateway_metrics
from billing_gateway.domain.resilience import BreakerState, CircuitBreaker, TokenBucket
from billing_gateway.settings import BillingGatewaySettings
from runtime import deadlines, errors

logger = logging.getLogger(__name__)

T = TypeVar("T")
Json = dict[str, Any]

# Shortest time worth starting a Stripe request with; less and we answer UNAVAILABLE now.
_MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True)
class StripeAccount:
    """The credentials a workspace's calls are made with."""

    workspace_id: str
    secret_key: str
    connected_account_id: str = ""

    @property
    def livemode(self) -> bool:
        """Live keys start sk_live_ / rk_live_."""
        return "_live_" in self.secret_key[:8]

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the account's client, breaker and bucket."""
        return (self.secret_key, self.connected_account_id)


def operation_key(operation_id: str, step: str = "") -> str:
    """The Stripe Idempotency-Key of an operation (one per Stripe call it makes)."""
    return f"askvault-{operation_id}" + (f"-{step}" if step else "")


def unavailable(message: str) -> errors.ServiceError:
    """UNAVAILABLE STRIPE_UNAVAILABLE: the bot says it cannot reach billing right now."""
    return errors.ServiceError(errors.Kind.UNAVAILABLE, "STRIPE_UNAVAILABLE", message)


def _code(error: stripe.StripeError) -> str:
    body = error.json_body
    if isinstance(body, dict):
        inner = body.get("error") or {}
        return str(inner.get("code") or inner.get("decline_code") or error.code or "")
    return str(error.code or "")


def _server_side(error: stripe.StripeError) -> bool:
    """Stripe could not answer (connection, rate limit, 5xx), as opposed to refusing."""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = error.http_status or 0
    return status == 429 or status >= 500


def _retryable(error: stripe.StripeError) -> bool:
    if error.headers and str(error.headers.get("stripe-should-retry", "")).lower() == "false":
        return False
    return _server_side(error)


def map_error(error: stripe.StripeError) -> errors.ServiceError:
    """A non-retryable Stripe error as our status and reason (messages carry no card data:
    Stripe's messages never include card numbers, and we add only ids)."""
    code = _code(error)
    message = f"Stripe: {error.user_message or 'request refused'}"
    kind = errors.Kind
    if isinstance(error, stripe.CardError) or code == "card_declined":
        return errors.ServiceError(kind.FAILED_PRECONDITION, "CARD_DECLINED", message)
    if code == "charge_already_refunded":
        return errors.ServiceError(kind.FAILED_PRECONDITION, "ALREADY_REFUNDED", message)
    if code == "resource_missing" or error.http_status == 404:
        return errors.ServiceError(kind.NOT_FOUND, "NOT_FOUND", "object not found")
    if isinstance(error, stripe.IdempotencyError) or code == "idempotency_key_in_use":
        return errors.ServiceError(kind.INVALID_ARGUMENT, "IDEMPOTENCY_MISMATCH", message)
    if (
        isinstance(error, stripe.PermissionError)
        or code in ("account_invalid", "account_closed", "platform_account_required")
        or error.http_status == 403
    ):
        return errors.ServiceError(kind.FAILED_PRECONDITION, "STRIPE_ACCOUNT_RESTRICTED", message)
    if isinstance(error, stripe.AuthenticationError):
        return errors.ServiceError(
            kind.FAILED_PRECONDITION, "ACCOUNT_NOT_CONNECTED", "Stripe refused the account's key"
        )
    if _server_side(error):
        # Also when Stripe says not to retry: it still did not answer, it did not refuse.
        return unavailable("Stripe is not answering")
    return errors.ServiceError(kind.FAILED_PRECONDITION, "OPERATION_STATE", message)


def to_json(value: Any) -> Json:
    """A StripeObject as plain dicts and lists."""
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    return dict(value)


class StripeGateway:
    """The only door to Stripe."""

    def __init__(
        self, settings: BillingGatewaySettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._monotonic = monotonic
        self._clients: dict[tuple[str, str], tuple[stripe.StripeClient, stripe.AIOHTTPClient]] = {}
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._api_version = settings.stripe_api_version or stripe.api_version
        gateway_metrics.watch_breakers(self)

    def client(self, account: StripeAccount) -> stripe.StripeClient:
        """The SDK client of an account (created once, kept for its connection pool)."""
        found = self._clients.get(account.key)
        if found is None:
            http_client = stripe.AIOHTTPClient(timeout=self._settings.stripe_timeout_seconds)
            sdk = stripe.StripeClient(
                account.secret_key,
                stripe_account=account.connected_account_id or None,
                stripe_version=self._api_version,
                base_addresses={"api": self._settings.stripe_api_base.rstrip("/")},
                # Our loop retries within the caller's deadline; the SDK's would not.
                max_network_retries=0,
                http_client=http_client,
            )
            found = (sdk, http_client)
            self._clients[account.key] = found
        return found[0]

    def breaker(self, account: StripeAccount) -> CircuitBreaker:
        """The account's circuit breaker."""
        found = self._breakers.get(account.key)
        if found is None:
            found = CircuitBreaker(
                self._settings.breaker_failure_threshold, self._settings.breaker_cooldown_seconds
            )
            self._breakers[account.key] = found
        return found

    def _bucket(self, account: StripeAccount) -> TokenBucket:
        found = self._buckets.get(account.key)
        if found is None:
            rate = (
                self._settings.stripe_rate_limit_live
                if account.livemode
                else self._settings.stripe_rate_limit_test
            )
            found = TokenBucket(rate=rate, capacity=rate)
            self._buckets[account.key] = found
        return found

    async def call(
        self,
        account: StripeAccount,
        what: str,
        request: Callable[[stripe.StripeClient], Awaitable[T]],
    ) -> T:
        """Runs one Stripe request (``what`` names it in logs) with the protections."""
        sdk = self.client(account)
        breaker = self.breaker(account)
        attempt = 0
        backoff = self._settings.stripe_retry_backoff_seconds
        while True:
            if not breaker.allow(self._monotonic()):
                raise unavailable("Stripe is failing for this account; not calling it for now")
            bucket = self._bucket(account)
            wait = bucket.reserve(self._monotonic())
            left = deadlines.remaining()
            if wait > 0:
                if left is not None and wait > left - _MIN_ATTEMPT_SECONDS:
                    bucket.give_back()
                    self._release_probe(breaker)
                    raise unavailable("the account's Stripe request rate is exhausted")
                await asyncio.sleep(wait)
            budget = deadlines.timeout(self._settings.stripe_timeout_seconds)
            if budget < _MIN_ATTEMPT_SECONDS:
                self._release_probe(breaker)
                raise unavailable("no time left to call Stripe")
            try:
                async with asyncio.timeout(budget):
                    result = await request(sdk)
            except TimeoutError:
                failure: str = "timeout"
            except stripe.StripeError as error:
                if not _retryable(error):
                    if _server_side(error):
                        breaker.record_failure(self._monotonic())
                    else:
                        breaker.record_success()
                    raise map_error(error) from None
                failure = type(error).__name__
            else:
                breaker.record_success()
                return result
            breaker.record_failure(self._monotonic())
            logger.warning(
                "stripe call failed",
                extra={
                    "stripe_call": what,
                    "failure": failure,
                    "attempt": attempt,
                    "workspace_id": account.workspace_id,
                },
            )
            attempt += 1
            if attempt > self._settings.stripe_max_network_retries:
                raise unavailable("Stripe did not answer")
            pause = backoff * (0.5 + random.random())
            left = deadlines.remaining()
            if left is not None and pause + _MIN_ATTEMPT_SECONDS > left:
                raise unavailable("Stripe did not answer within the deadline")
            await asyncio.sleep(pause)
            backoff *= 2

    @staticmethod
    def _release_probe(breaker: CircuitBreaker) -> None:
        breaker.release_probe()

    def breaker_state(self, account: StripeAccount) -> BreakerState:
        """The account's breaker state now (health reports and tests)."""
        return self.breaker(account).state(self._monotonic())

    def breaker_states(self) -> list[BreakerState]:
        """Every account's breaker state now (the breakers gauge reads them per scrape)."""
        now = self._monotonic()
        return [breaker.state(now) for breaker in list(self._breakers.values())]

    async def close(self) -> None:
        """Closes every HTTP session."""
        gateway_metrics.unwatch_breakers(self)
        for _, http_client in self._clients.values():
            await http_client.close_async()  # type: ignore[no-untyped-call]
        self._clients.clear()


async def retrieve_json(
    gateway: StripeGateway, account: StripeAccount, what: str, path: str, **params: Any
) -> Json:
    """One object read as plain JSON, no StripeObject built (the webhook worker's reads);
    errors as ``StripeGateway.call`` maps them."""
    response = await gateway.call(
        account, what, lambda client: client.raw_request_async("get", path, **params)
    )
    return dict(response.data)
