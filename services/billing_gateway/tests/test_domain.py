"""Unit tests of the gateway's pure parts: no server, no database, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_gateway.domain import billing, recovery, signatures
from billing_gateway.domain.resilience import BreakerState, CircuitBreaker, TokenBucket
from runtime import errors


def test_token_bucket_spends_its_burst_then_queues_at_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, capacity=2.0)
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == 0.0
    assert bucket.reserve(100.0) == pytest.approx(0.1)
    assert bucket.reserve(100.0) == pytest.approx(0.2)
    # Half a second later the debt is paid and three tokens accrued, capped at two.
    assert bucket.reserve(100.5) == 0.0
    bucket.give_back()
    assert bucket.tokens == pytest.approx(2.0)


def test_breaker_opens_after_threshold_half_opens_and_closes_or_reopens() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=10.0)
    for now in (1.0, 2.0):
        breaker.record_failure(now)
        assert breaker.state(now) is BreakerState.CLOSED
    breaker.record_failure(3.0)
    assert breaker.state(3.0) is BreakerState.OPEN and not breaker.allow(12.9)
    assert breaker.state(13.0) is BreakerState.HALF_OPEN
    assert breaker.allow(13.0) and not breaker.allow(13.0)  # one probe at a time
    breaker.record_failure(13.5)  # the probe failed: open again for a full cooldown
    assert breaker.state(20.0) is BreakerState.OPEN
    assert breaker.allow(23.5)
    breaker.release_probe()  # never sent: another probe may go
    assert breaker.allow(23.6)
    breaker.record_success()
    assert breaker.state(23.7) is BreakerState.CLOSED and breaker.failures == 0


def test_breaker_success_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=1.0)
    breaker.record_failure(0.0)
    breaker.record_success()
    breaker.record_failure(0.1)
    assert breaker.state(0.1) is BreakerState.CLOSED


def _reason(payload: bytes, header: str, secrets: list[str], now: float) -> str:
    try:
        signatures.verify(payload, header, secrets, now=now, tolerance_seconds=300)
    except errors.ServiceError as refused:
        return refused.reason
    return "OK"


def test_signature_verification() -> None:
    payload = b'{"id":"evt_1"}'
    header = signatures.sign(payload, "whsec_new", 1_000)
    assert _reason(payload, header, ["whsec_old", "whsec_new"], 1_000) == "OK"  # rotation
    assert _reason(payload, header, ["whsec_other"], 1_000) == "SIGNATURE_INVALID"
    assert _reason(payload + b" ", header, ["whsec_new"], 1_000) == "SIGNATURE_INVALID"
    assert _reason(payload, header, ["whsec_new"], 1_300) == "OK"
    old, future = 1_301, 699
    assert _reason(payload, header, ["whsec_new"], old) == "SIGNATURE_TIMESTAMP_OUT_OF_RANGE"
    assert _reason(payload, header, ["whsec_new"], future) == "SIGNATURE_TIMESTAMP_OUT_OF_RANGE"
    for malformed in ("", "t=abc,v1=00", "v1=00", "t=1000", "x" * 5000):
        assert _reason(payload, malformed, ["whsec_new"], 1_000) == "SIGNATURE_INVALID"
    # Several v1 signatures (Stripe sends one per active secret): any one may match.
    both = header + ",v1=" + "0" * 64
    assert _reason(payload, both, ["whsec_new"], 1_000) == "OK"


def _charge(
    charge_id: str, created: int, amount: int = 1900, **extra: object
) -> billing.ChargeFacts:
    facts: dict[str, object] = {
        "id": charge_id,
        "amount": amount,
        "currency": "usd",
        "created": created,
        "captured": True,
        "refunded": False,
        "amount_refunded": 0,
        "status": "succeeded",
    }
    facts.update(extra)
    return billing.charge_facts(facts)


def test_duplicate_charges() -> None:
    charges = [
        _charge("ch_a", 0),
        _charge("ch_b", 180),  # duplicate of a
        _charge("ch_c", 200),  # a third identical one: alone
        _charge("ch_d", 300, amount=4900),  # other amount
        _charge("ch_e", 400, amount=4900, currency="eur"),  # other currency
        _charge("ch_f", 10_000, amount=700),
        _charge("ch_g", 10_060, amount=700, amount_refunded=100),  # partly refunded
        _charge("ch_h", 20_000, amount=800),
        _charge("ch_i", 20_000 + 86_401, amount=800),  # outside the window
        _charge("ch_j", 30_000, amount=900, captured=False),
        _charge("ch_k", 30_001, amount=900),
        _charge("ch_l", 40_000, amount=50, status="failed"),
        _charge("ch_m", 40_001, amount=50),
    ]
    assert billing.find_duplicates(charges, 86_400) == [("ch_a", "ch_b")]
    newest_first = [
        _charge("x1", 0),
        _charge("x2", 5),
        _charge("y1", 100, 2),
        _charge("y2", 101, 2),
    ]
    assert billing.find_duplicates(newest_first, 60) == [("y1", "y2"), ("x1", "x2")]


def test_proration_amount_and_feature_diffs() -> None:
    preview = {
        "lines": {
            "data": [
                {"amount": -2450, "proration": True},
                {"amount": 9950, "parent": {"subscription_item_details": {"proration": True}}},
                {"amount": 19900, "parent": {"subscription_item_details": {"proration": False}}},
            ]
        }
    }
    assert billing.proration_amount(preview) == 7500
    assert billing.proration_amount({}) == 0
    gained, lost = billing.features_diff(["A", "B", "C"], ["B", "D", "A", "E"])
    assert gained == ["D", "E"] and lost == ["C"]
    assert billing.features_of({"marketing_features": [{"name": "X"}, {}, {"name": "Y"}]}) == [
        "X",
        "Y",
    ]


def test_upi_and_emandate_detection() -> None:
    card_sub = {"payment_settings": {"payment_method_types": ["card"]}}
    assert billing.plan_change_in_place(card_sub, {"type": "card"})
    assert billing.plan_change_in_place({}, None)
    assert not billing.plan_change_in_place(card_sub, {"type": "upi"})
    assert not billing.plan_change_in_place(
        {"payment_settings": {"payment_method_types": ["upi"]}}, None
    )
    mandate_upi = {"payment_method_details": {"type": "upi"}}
    assert not billing.plan_change_in_place(card_sub, {"type": "card"}, mandate_upi)
    rupay = {"payment_method_details": {"type": "card", "card": {"network": "rupay"}}}
    assert not billing.plan_change_in_place(card_sub, {"type": "card"}, rupay)
    in_mandate = {
        "payment_settings": {
            "payment_method_options": {"card": {"mandate_options": {"amount": 1599}}}
        }
    }
    assert not billing.plan_change_in_place(in_mandate, {"type": "card"})


def test_display_amount() -> None:
    assert billing.display_amount(4900, "usd") == "49.00 USD"
    assert billing.display_amount(5, "eur") == "0.05 EUR"
    assert billing.display_amount(-250, "usd") == "-2.50 USD"
    assert billing.display_amount(1200, "jpy") == "1200 JPY"


def test_display_amount_in_each_currencys_unit() -> None:
    # What payment-failure and refund messages say: the currency's own minor unit, not cents.
    assert billing.display_amount(159900, "inr") == "1599.00 INR"
    assert billing.display_amount(1234, "kwd") == "1.234 KWD"
    assert billing.display_amount(-2500, "bhd") == "-2.500 BHD"
    assert billing.display_amount(-50, "jpy") == "-50 JPY"


def test_recovery_stats() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cases = [
        recovery.CaseOutcome(start, "recovered", start + timedelta(hours=48)),
        recovery.CaseOutcome(start, "recovered", start + timedelta(hours=48, seconds=1)),
        recovery.CaseOutcome(start, "lost", start + timedelta(hours=1)),
        recovery.CaseOutcome(start, "open", None),
    ]
    figures = recovery.stats(cases)
    assert (figures.failed, figures.recovered_within_48h, figures.recovered) == (4, 1, 2)
    assert figures.rate == pytest.approx(0.25)
    assert recovery.stats([]).rate == 0.0


def test_stripe_server_errors_are_unavailable_even_when_not_to_be_retried() -> None:
    import stripe

    from billing_gateway.stripe_api import map_error

    no_retry = stripe.APIError("busy", http_status=503, headers={"stripe-should-retry": "false"})
    declined = stripe.CardError(  # type: ignore[no-untyped-call]
        "declined", param="", code="card_declined", http_status=402
    )
    assert map_error(no_retry).kind is errors.Kind.UNAVAILABLE
    assert map_error(no_retry).reason == "STRIPE_UNAVAILABLE"
    assert map_error(declined).reason == "CARD_DECLINED"
