"""Unit tests of tags, customer matching and content gating."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from identity.domain import contacts
from runtime import errors

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_newer_update_wins_and_older_is_ignored_per_tag() -> None:
    tags = contacts.apply_update(
        contacts.Tags(),
        contacts.TagUpdate(source_time=T0 + timedelta(minutes=5), customer_status="past_due"),
    )
    stale = contacts.TagUpdate(source_time=T0, customer_status="active", plan_tier="growth")
    tags = contacts.apply_update(tags, stale)
    # The stale status loses; the plan tier had no value yet, so the stale one is still news.
    assert tags.customer_status == "past_due"
    assert tags.plan_tier == "growth"
    assert tags.plan_tier_at == T0


def test_out_of_order_sequence_ends_in_the_newest_state() -> None:
    updates = [
        contacts.TagUpdate(source_time=T0 + timedelta(seconds=s), customer_status=status)
        for s, status in ((1, "trialing"), (2, "active"), (3, "past_due"), (4, "canceled"))
    ]
    for order in ([3, 0, 2, 1], [0, 1, 2, 3], [2, 3, 1, 0]):
        tags = contacts.Tags()
        for index in order:
            tags = contacts.apply_update(tags, updates[index])
        assert tags.customer_status == "canceled"


def test_trial_end_is_cleared_only_when_asked() -> None:
    tags = contacts.apply_update(
        contacts.Tags(),
        contacts.TagUpdate(source_time=T0, trial_ends=T0 + timedelta(days=14), set_trial_ends=True),
    )
    untouched = contacts.apply_update(
        tags, contacts.TagUpdate(source_time=T0 + timedelta(days=1), customer_status="active")
    )
    assert untouched.trial_ends == T0 + timedelta(days=14)
    cleared = contacts.apply_update(
        tags, contacts.TagUpdate(source_time=T0 + timedelta(days=1), set_trial_ends=True)
    )
    assert cleared.trial_ends is None


def test_customer_match_is_case_insensitive() -> None:
    candidates = [
        contacts.Candidate("cus_1", "Ann@Example.com"),
        contacts.Candidate("cus_2", "x@y.z"),
    ]
    assert contacts.match_customer("ann@example.COM ", candidates) == "cus_1"


def test_ambiguous_customer_match_is_reported_not_guessed() -> None:
    candidates = [
        contacts.Candidate("cus_1", "ann@example.com"),
        contacts.Candidate("cus_2", "ANN@example.com"),
    ]
    with pytest.raises(errors.ServiceError) as ambiguous:
        contacts.match_customer("ann@example.com", candidates)
    assert ambiguous.value.reason == "AMBIGUOUS_CUSTOMER_MATCH"
    assert ambiguous.value.metadata["candidates"] == "cus_1,cus_2"


def test_no_matching_customer_is_not_found() -> None:
    with pytest.raises(errors.ServiceError) as missing:
        contacts.match_customer("ann@example.com", [contacts.Candidate("cus_1", "bob@example.com")])
    assert missing.value.kind is errors.Kind.NOT_FOUND


def test_access_by_minimum_tier_and_status() -> None:
    tags = contacts.Tags(customer_status="active", plan_tier="growth")
    enterprise_docs = contacts.Requirement(minimum_plan_tier="enterprise")
    growth_docs = contacts.Requirement(
        minimum_plan_tier="starter", customer_statuses=frozenset({"active", "trialing"})
    )
    assert contacts.unmet_requirements(tags, enterprise_docs, T0) == ["minimum_plan_tier"]
    assert contacts.unmet_requirements(tags, growth_docs, T0) == []


def test_active_trial_requirement_checks_the_end_date() -> None:
    requirement = contacts.Requirement(require_active_trial=True)
    trialing = contacts.Tags(customer_status="trialing", trial_ends=T0 + timedelta(days=1))
    assert contacts.unmet_requirements(trialing, requirement, T0) == []
    assert contacts.unmet_requirements(trialing, requirement, T0 + timedelta(days=2)) == [
        "require_active_trial"
    ]
