"""The pure parts of the pages: the SVG chart's geometry, the recovery weeks, the bounds
form turned into complete bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2
from console import charts
from console.pages import bounds, recovery


def test_bars_scale_to_the_axis_and_the_band_covers_its_range() -> None:
    chart = charts.bar_chart(["a", "b", "c"], [0.0, 0.5, 1.0], top=1.0, band=(0.15, 0.25))
    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0 and heights[2] == pytest.approx(2 * heights[1], abs=0.2)
    assert chart.bars[2].y == charts.TOP
    assert chart.band is not None
    top, bottom = chart.band
    plot = charts.HEIGHT - charts.BOTTOM - charts.TOP
    assert bottom - top == pytest.approx(plot * 0.10, abs=0.2)


def test_a_long_series_labels_every_few_bars_and_always_the_last() -> None:
    chart = charts.bar_chart([f"d{i}" for i in range(30)], [1.0] * 30)
    labelled = [bar.axis_label for bar in chart.bars if bar.axis_label]
    assert len(labelled) <= charts.MAX_AXIS_LABELS and labelled[-1] == "d29"


def test_twelve_weeks_end_with_this_weeks_monday() -> None:
    starts = recovery.week_starts(datetime(2026, 11, 30, 15, 0, tzinfo=UTC))
    assert len(starts) == 12
    assert starts[-1] == datetime(2026, 11, 30, tzinfo=UTC)
    assert starts[0] == datetime(2026, 9, 14, tzinfo=UTC)


def _current() -> policy_pb2.Bounds:
    current = policy_pb2.Bounds(
        workspace_id="ws",
        askvault_plan=policy_pb2.ASK_VAULT_PLAN_BUSINESS,
        refund_caps=[
            common_pb2.Money(amount_minor=50000, currency="usd"),
            common_pb2.Money(amount_minor=40000, currency="eur"),
        ],
    )
    current.updated_at.GetCurrentTime()
    current.refund_window.FromSeconds(14 * 86400 + 3600)
    current.cancellation_grace.FromSeconds(30 * 60 + 30)
    return current


FORM = {
    "cap_amount": "120.50",
    "cap_currency": "USD",
    "refund_window_days": "14",
    "plan_changes_per_period": "2",
    "resubscriptions_per_period": "1",
    "cancellation_grace_minutes": "2880",
    "counter_period": "calendar_week",
    "time_zone": "Europe/Paris",
    "self_serve_price_ids": "price_a, price_b",
}


def test_the_form_replaces_its_fields_and_keeps_the_rest() -> None:
    proposed = bounds.proposed_bounds(_current(), FORM)
    assert [(c.currency, c.amount_minor) for c in proposed.refund_caps] == [
        ("usd", 12050),
        ("eur", 40000),
    ]
    # The window still shows its 14 days: kept to the second, not rounded down.
    assert proposed.refund_window.seconds == 14 * 86400 + 3600
    assert proposed.cancellation_grace.seconds == 48 * 3600
    assert proposed.counter_period == policy_pb2.COUNTER_PERIOD_CALENDAR_WEEK
    assert list(proposed.self_serve_price_ids) == ["price_a", "price_b"]
    assert proposed.askvault_plan == policy_pb2.ASK_VAULT_PLAN_BUSINESS
    assert not proposed.HasField("updated_at")
    untouched = bounds.proposed_bounds(_current(), {**FORM, "cancellation_grace_minutes": "30"})
    assert untouched.cancellation_grace.seconds == 30 * 60 + 30
    shorter = bounds.proposed_bounds(_current(), {**FORM, "refund_window_days": "7"})
    assert shorter.refund_window.seconds == 7 * 86400


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cap_amount", "lots"),
        ("cap_amount", "-1"),
        ("cap_currency", "dollars"),
        ("refund_window_days", "x"),
        ("plan_changes_per_period", "-3"),
        ("counter_period", "fortnight"),
    ],
)
def test_a_wrong_field_proposes_nothing(field: str, value: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field
        bounds.proposed_bounds(_current(), {**FORM, field: value})


def test_outcome_charts_read_the_edges_daily_figures() -> None:
    from console.pages import outcomes

    report = {
        "daily": [
            {"day": "2026-11-29", "totals": {"resolved_without_human_share": None}},
            {
                "day": "2026-11-30",
                "totals": {
                    "resolved_without_human_share": 0.75,
                    "refund_automatic_share": 0.5,
                    "resolution_seconds_median": 120.0,
                },
            },
        ]
    }
    drawn = outcomes.outcome_charts(report)
    assert [bar.label for bar in drawn["resolved"].bars] == ["11-29", "11-30"]
    assert drawn["resolved"].bars[0].height == 0
    assert drawn["resolved"].bars[1].value_text == "75%"
    assert drawn["refunds"].bars[1].value_text == "50%"
    assert drawn["minutes"].bars[1].value_text == "2"


@pytest.mark.parametrize(
    ("back", "location"),
    [
        ("/messages?status=dead", "/messages?status=dead"),
        ("/escalations/esc_1", "/escalations/esc_1"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_a_forms_way_back_stays_in_the_console(back: str, location: str) -> None:
    from console import web

    assert web.redirect(back).headers["location"] == location
