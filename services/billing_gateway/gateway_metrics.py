"""The billing gateway's own metrics (OpenTelemetry, served to Prometheus by
runtime/telemetry.py), beside the per-RPC ones every service has:

- ``askvault_billing_webhook_signature_failures_total{reason}``: Stripe webhook deliveries
  refused for their signature (SIGNATURE_INVALID: no signing secret of the workspace matches;
  SIGNATURE_TIMESTAMP_OUT_OF_RANGE: signed too long ago or in the future);
- ``askvault_billing_stripe_breakers_open{state}``: Stripe accounts whose circuit breaker is
  open (calls fail at once) or half-open (one probe may go) in this replica, read from the
  breakers in memory when scraped;
- ``askvault_billing_reconciliation_differences_total{difference}``: what reconciliation
  found Stripe and the gateway's records disagree on: an operation the ledger still held in
  flight that Stripe shows done (``operation_succeeded``) or not done
  (``operation_failed``), and Stripe events no webhook delivered, found by the mirror's
  catch-up (``missed_event``), and a refund or plan change Stripe shows done that the
  ledger had no row of (``operation_adopted``: the database was restored from a backup
  older than the write);
- ``askvault_billing_refunds_total{currency}`` and
  ``askvault_billing_refunded_amount_total{currency}`` (minor units): refunds Stripe made;
- ``askvault_billing_recovery_cases_opened_total{message}``: failed payments that opened a
  recovery case, with whether the customer's recovery message went to the notifier
  (``sent``) or was refused (``refused``: no contact, no hosted invoice page, ...);
- ``askvault_billing_recovery_cases_closed_total{state}``: cases closed as ``recovered``
  (the invoice paid) or ``lost`` (voided, uncollectible): recovered / closed is the rate.
  Counted when the webhook batch that did it committed, so never twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from opentelemetry import metrics

from billing_gateway.domain.resilience import BreakerState

_meter = metrics.get_meter("askvault.billing")
_signature_failures = _meter.create_counter(
    "askvault.billing.webhook.signature_failures",
    description="Stripe webhook deliveries refused for their signature, by reason",
)
_reconciliation_differences = _meter.create_counter(
    "askvault.billing.reconciliation.differences",
    description="Differences between Stripe and the gateway's records that reconciliation found",
)
_refunds = _meter.create_counter(
    "askvault.billing.refunds", description="Refunds made in Stripe, by currency"
)
_refunded_amount = _meter.create_counter(
    "askvault.billing.refunded_amount",
    description="Amount refunded in Stripe, in the currency's minor unit, by currency",
)

_cases_opened = _meter.create_counter(
    "askvault.billing.recovery.cases_opened",
    description="Failed payments that opened a recovery case, by whether the message went",
)
_cases_closed = _meter.create_counter(
    "askvault.billing.recovery.cases_closed",
    description="Recovery cases closed, by state (recovered or lost)",
)

# Reconciliation's differences (the ``difference`` attribute).
OPERATION_SUCCEEDED = "operation_succeeded"
OPERATION_FAILED = "operation_failed"
MISSED_EVENT = "missed_event"
OPERATION_ADOPTED = "operation_adopted"


def count_signature_failure(reason: str) -> None:
    """A webhook delivery was refused for its signature (the error's reason)."""
    _signature_failures.add(1, {"reason": reason})


def count_differences(difference: str, count: int = 1) -> None:
    """Reconciliation found ``count`` differences of a kind."""
    if count:
        _reconciliation_differences.add(count, {"difference": difference})


def count_refund(refund: dict[str, Any]) -> None:
    """Stripe made this refund (its object as Stripe answered)."""
    currency = str(refund.get("currency") or "").lower()
    _refunds.add(1, {"currency": currency})
    _refunded_amount.add(int(refund.get("amount") or 0), {"currency": currency})


def count_case_opened(messaged: bool) -> None:
    """A failed payment opened a case; its recovery message went (or was refused)."""
    _cases_opened.add(1, {"message": "sent" if messaged else "refused"})


def count_case_closed(state: str) -> None:
    """A recovery case closed as ``recovered`` or ``lost``."""
    _cases_closed.add(1, {"state": state})


class HasBreakers(Protocol):
    """What holds breakers (the Stripe gateway)."""

    def breaker_states(self) -> list[BreakerState]:
        """Every account's breaker state now."""


# The gateways of this process (one in production; tests start several): weak, so a gateway
# nobody closed does not stay counted for ever.
_gateways: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_breakers(gateway: HasBreakers) -> None:
    """Counts this gateway's breakers in the gauge until ``unwatch_breakers``."""
    _gateways.add(gateway)


def unwatch_breakers(gateway: HasBreakers) -> None:
    """Stops counting a closed gateway's breakers."""
    _gateways.discard(gateway)


def _observe_breakers(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    counts = {BreakerState.OPEN: 0, BreakerState.HALF_OPEN: 0}
    for gateway in list(_gateways):
        for state in gateway.breaker_states():
            if state in counts:
                counts[state] += 1
    return [metrics.Observation(count, {"state": str(state)}) for state, count in counts.items()]


_meter.create_observable_gauge(
    "askvault.billing.stripe.breakers_open",
    callbacks=[_observe_breakers],
    description="Stripe accounts whose circuit breaker is open or half-open, by state",
)
