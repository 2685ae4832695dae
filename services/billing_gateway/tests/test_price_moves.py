"""Which price a subscription may move to when the workspace lists no self-serve prices:
the default the gateway checks against Stripe's read before writing."""

from __future__ import annotations

from typing import Any

import pytest

from billing_gateway import price_moves
from runtime import errors

MONTHLY_USD: dict[str, Any] = {
    "id": "price_current",
    "active": True,
    "currency": "usd",
    "recurring": {"interval": "month", "interval_count": 1},
}


def _target(**changes: Any) -> dict[str, Any]:
    return {**MONTHLY_USD, "id": "price_target", **changes}


@pytest.mark.parametrize(
    ("target", "listed", "problem"),
    [
        (_target(), False, ""),
        (_target(active=False), True, "not active"),
        (_target(recurring=None), True, "not recurring"),
        (_target(currency="eur"), True, "another currency"),
        (_target(recurring={"interval": "year", "interval_count": 1}), False, "interval"),
        (_target(recurring={"interval": "month", "interval_count": 3}), False, "interval"),
        # A price the workspace listed may be billed at another interval: it chose it.
        (_target(recurring={"interval": "year", "interval_count": 1}), True, ""),
    ],
)
def test_the_default_takes_active_recurring_prices_of_the_same_currency_and_interval(
    target: dict[str, Any], listed: bool, problem: str
) -> None:
    found = price_moves.problem(target, MONTHLY_USD, listed=listed)
    assert (problem in found) if problem else found == "", found


def test_a_refused_move_is_failed_precondition_with_its_reason() -> None:
    with pytest.raises(errors.ServiceError) as refused:
        price_moves.check(_target(currency="eur"), MONTHLY_USD, listed=False)
    assert refused.value.kind is errors.Kind.FAILED_PRECONDITION
    assert refused.value.reason == "PRICE_NOT_SWITCHABLE"
    assert refused.value.metadata == {"target_price_id": "price_target"}
