"""Unit tests of policy's pure rules: periods, decisions, loosening, grants, the hash chain."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policy.domain import audit, decisions, grants, periods
from policy.domain.bounds import (
    DEFAULT_REFUND_CAPS_MAJOR,
    AskVaultPlan,
    Bounds,
    default_caps_spec,
    loosened_fields,
    parse_caps,
)
from policy.domain.decisions import Reason, Verdict
from policy.domain.model import Action, Channel, Confirmation, Details, Money
from policy.domain.periods import Period
from policy.tests.conftest import policy_settings
from runtime import currency, errors

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
DEFAULTS = Bounds(
    askvault_plan=AskVaultPlan.BUSINESS,
    refund_caps=(Money(50000, "usd"),),
    refund_window=timedelta(days=14),
    plan_changes_per_period=3,
    cancellation_grace=timedelta(seconds=30),
    confirm_refunds=True,
    confirm_plan_changes=True,
    counter_period=Period.CALENDAR_MONTH,
)
REFUND = Details(
    charge_id="ch_1",
    amount=Money(2000, "usd"),
    charge_created_at=NOW - timedelta(days=1),
)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        (
            Period.CALENDAR_MONTH,
            datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 2, 1, tzinfo=UTC),
        ),
        (
            Period.CALENDAR_MONTH,
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (
            Period.CALENDAR_MONTH,
            datetime(2028, 2, 29, 8, tzinfo=UTC),
            datetime(2028, 2, 1, tzinfo=UTC),
            datetime(2028, 3, 1, tzinfo=UTC),
        ),
        (
            Period.CALENDAR_WEEK,
            datetime(2026, 3, 15, 23, tzinfo=UTC),  # a Sunday
            datetime(2026, 3, 9, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
        ),
        (
            Period.CALENDAR_DAY,
            datetime(2026, 3, 15, 0, 0, tzinfo=UTC),
            datetime(2026, 3, 15, tzinfo=UTC),
            datetime(2026, 3, 16, tzinfo=UTC),
        ),
    ],
)
def test_period_bounds(period: Period, now: datetime, start: datetime, end: datetime) -> None:
    assert periods.bounds_of(period, now) == (start, end)


def test_periods_are_taken_in_utc() -> None:
    from zoneinfo import ZoneInfo

    # 1 Feb 01:00 in Paris is still 31 January in UTC.
    paris = datetime(2026, 2, 1, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert periods.bounds_of(Period.CALENDAR_MONTH, paris)[0] == datetime(2026, 1, 1, tzinfo=UTC)


TERMS = "ab" * 32
CONFIRMATION = Confirmation(
    quote_id="q_1",
    summary="Refund $20.00",
    terms_hash=TERMS,
    expires_at=NOW + timedelta(minutes=5),
    channel=Channel.CHAT_TURN,
)


def _decide(
    action: Action = Action.REFUND,
    details: Details = REFUND,
    bounds: Bounds = DEFAULTS,
    *,
    customer: str = "cus_1",
    confirmed: bool = True,
    confirmation: Confirmation | None = CONFIRMATION,
    expected: str = TERMS,
) -> decisions.Decision:
    return decisions.decide(
        action,
        details,
        bounds,
        assertion_customer=customer,
        confirmed=confirmed,
        confirmation=confirmation,
        expected_terms_hash=expected,
        now=NOW,
    )


def test_refund_within_bounds_reserves_on_the_currency_counter() -> None:
    decision = _decide()
    assert (decision.verdict, decision.reason) == (Verdict.ALLOW, Reason.WITHIN_BOUNDS)
    assert decision.details.stripe_customer_id == "cus_1"
    reservation = decision.reservation
    assert reservation is not None
    assert (reservation.currency, reservation.quantity, reservation.limit) == ("usd", 2000, 50000)
    assert reservation.period_end == datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "verdict"),
    [
        (timedelta(days=14) - timedelta(seconds=1), Verdict.ALLOW),
        (timedelta(days=14), Verdict.ALLOW),
        (timedelta(days=14, seconds=1), Verdict.ESCALATE),
    ],
)
def test_refund_window_edges(age: timedelta, verdict: Verdict) -> None:
    decision = _decide(details=replace(REFUND, charge_created_at=NOW - age))
    assert decision.verdict is verdict
    assert decision.escalate is (verdict is Verdict.ESCALATE)


@pytest.mark.parametrize(
    ("kwargs", "verdict", "reason"),
    [
        (
            {"bounds": replace(DEFAULTS, askvault_plan=AskVaultPlan.TEAM)},
            Verdict.DENY,
            Reason.SKILL_NOT_ENABLED,
        ),
        ({"customer": ""}, Verdict.DENY, Reason.CUSTOMER_NOT_LINKED),
        (
            {"details": replace(REFUND, stripe_customer_id="cus_2")},
            Verdict.DENY,
            Reason.INVALID_DETAILS,
        ),
        (
            {"details": replace(REFUND, amount=Money(0, "usd"))},
            Verdict.DENY,
            Reason.INVALID_DETAILS,
        ),
        (
            {"details": replace(REFUND, charge_created_at=NOW + timedelta(hours=1))},
            Verdict.DENY,
            Reason.INVALID_DETAILS,
        ),
        (
            {"details": replace(REFUND, amount=Money(100, "eur"))},
            Verdict.ESCALATE,
            Reason.CURRENCY_NOT_COVERED,
        ),
        ({"confirmed": False}, Verdict.NEEDS_CONFIRMATION, Reason.CONFIRMATION_REQUIRED),
        (
            # The workspace's flag no longer waives the person's yes.
            {"confirmed": False, "bounds": replace(DEFAULTS, confirm_refunds=False)},
            Verdict.NEEDS_CONFIRMATION,
            Reason.CONFIRMATION_REQUIRED,
        ),
        ({"confirmation": None}, Verdict.DENY, Reason.CONFIRMATION_INVALID),
        ({"expected": "cd" * 32}, Verdict.DENY, Reason.CONFIRMATION_INVALID),
        ({"expected": ""}, Verdict.DENY, Reason.CONFIRMATION_INVALID),
        (
            {"confirmation": replace(CONFIRMATION, channel=None)},
            Verdict.DENY,
            Reason.CONFIRMATION_INVALID,
        ),
        (
            {"confirmation": replace(CONFIRMATION, expires_at=None)},
            Verdict.DENY,
            Reason.CONFIRMATION_INVALID,
        ),
        (
            {"confirmation": replace(CONFIRMATION, expires_at=NOW - timedelta(seconds=6))},
            Verdict.DENY,
            Reason.CONFIRMATION_INVALID,
        ),
        (
            {"confirmation": replace(CONFIRMATION, expires_at=NOW - timedelta(seconds=5))},
            Verdict.ALLOW,
            Reason.WITHIN_BOUNDS,
        ),
        (
            # An invalid yes is refused before the window would escalate it.
            {
                "confirmation": None,
                "details": replace(REFUND, charge_created_at=NOW - timedelta(days=30)),
            },
            Verdict.DENY,
            Reason.CONFIRMATION_INVALID,
        ),
        (
            # Not claimed: the quote is not looked at.
            {"confirmed": False, "confirmation": None},
            Verdict.NEEDS_CONFIRMATION,
            Reason.CONFIRMATION_REQUIRED,
        ),
        (
            {"action": Action.CHANGE_PLAN, "details": Details(subscription_id="sub_1")},
            Verdict.DENY,
            Reason.INVALID_DETAILS,
        ),
        (
            {"action": Action.RETRY_PAYMENT, "details": Details(invoice_id="in_1")},
            Verdict.ALLOW,
            Reason.WITHIN_BOUNDS,
        ),
        (
            {
                "action": Action.RETRY_PAYMENT,
                "details": Details(invoice_id="in_1"),
                "confirmed": False,
            },
            Verdict.NEEDS_CONFIRMATION,
            Reason.CONFIRMATION_REQUIRED,
        ),
        (
            {
                "action": Action.CANCEL_SUBSCRIPTION,
                "details": Details(subscription_id="sub_1"),
                "confirmed": False,
            },
            Verdict.NEEDS_CONFIRMATION,
            Reason.CONFIRMATION_REQUIRED,
        ),
    ],
)
def test_decision_rules(kwargs: dict[str, object], verdict: Verdict, reason: Reason) -> None:
    decision = _decide(**kwargs)  # type: ignore[arg-type]
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_over_limit_escalates_refunds_and_denies_plan_changes() -> None:
    refund = decisions.over_limit(_decide())
    assert (refund.verdict, refund.reason, refund.escalate) == (
        Verdict.ESCALATE,
        Reason.REFUND_OVER_CAP,
        True,
    )
    plan = decisions.over_limit(
        _decide(Action.CHANGE_PLAN, Details(subscription_id="sub_1", target_price_id="price_2"))
    )
    assert (plan.verdict, plan.reason, plan.escalate) == (
        Verdict.DENY,
        Reason.PLAN_CHANGE_LIMIT,
        False,
    )


def test_usage_remaining_never_goes_negative() -> None:
    usage = decisions.Usage(
        decisions.Counter.REFUND_AMOUNT, "usd", 60000, 50000, NOW, decisions.Scope.VISITOR
    )
    assert usage.remaining == 0


@pytest.mark.parametrize(
    ("customer", "visitor", "pending", "over", "scope", "used"),
    [
        (49000, 10000, 2000, True, decisions.Scope.CUSTOMER, 49000),
        (49000, 49000, 2000, True, decisions.Scope.VISITOR, 49000),
        (10000, 49000, 2000, True, decisions.Scope.VISITOR, 49000),
        (30000, 10000, 2000, False, decisions.Scope.CUSTOMER, 30000),
        (10000, 30000, 0, False, decisions.Scope.VISITOR, 30000),
        (10000, 10000, 0, False, decisions.Scope.CUSTOMER, 10000),
    ],
)
def test_bound_usage_names_the_bound_reached_else_the_tighter(
    customer: int, visitor: int, pending: int, over: bool, scope: decisions.Scope, used: int
) -> None:
    reservation = _decide().reservation
    assert reservation is not None
    result = decisions.bound_usage(
        reservation,
        {decisions.Scope.CUSTOMER: customer, decisions.Scope.VISITOR: visitor},
        pending=pending,
    )
    assert result[0] is over
    assert (result[1].scope, result[1].used, result[1].limit) == (scope, used, 50000)


def test_confirmation_hash_covers_the_stored_quote() -> None:
    entry = audit.Entry(NOW, "visitor", "ct_1", "decision", confirmation=CONFIRMATION)
    plain = replace(entry, confirmation=None)
    altered = replace(entry, confirmation=replace(CONFIRMATION, summary="Refund $1"))
    hashes = {audit.entry_hash(audit.GENESIS_HASH, "ws", 1, e) for e in (entry, plain, altered)}
    assert len(hashes) == 3
    document = audit.confirmation_document(CONFIRMATION)
    assert audit.confirmation_from_document(document) == CONFIRMATION


@pytest.mark.parametrize(
    ("changes", "loosened"),
    [
        ({}, []),
        ({"askvault_plan": AskVaultPlan.ENTERPRISE}, []),
        ({"refund_caps": (Money(10000, "usd"),)}, []),
        ({"refund_caps": ()}, []),
        ({"refund_caps": (Money(50001, "usd"),)}, ["refund_caps.usd"]),
        ({"refund_caps": (Money(50000, "usd"), Money(1, "inr"))}, ["refund_caps.inr"]),
        ({"refund_window": timedelta(days=7)}, []),
        ({"refund_window": timedelta(days=14, seconds=1)}, ["refund_window"]),
        ({"plan_changes_per_period": 4}, ["plan_changes_per_period"]),
        ({"cancellation_grace": timedelta(seconds=60)}, []),
        ({"cancellation_grace": timedelta(seconds=29)}, ["cancellation_grace"]),
        ({"confirm_plan_changes": False}, ["confirm_plan_changes"]),
        ({"counter_period": Period.CALENDAR_WEEK}, ["counter_period"]),
        (
            {"plan_changes_per_period": 9, "confirm_refunds": False},
            ["plan_changes_per_period", "confirm_refunds"],
        ),
    ],
)
def test_loosening_is_measured_against_defaults(
    changes: dict[str, object], loosened: list[str]
) -> None:
    assert loosened_fields(replace(DEFAULTS, **changes), DEFAULTS) == loosened  # type: ignore[arg-type]


def test_caps_parse_from_settings() -> None:
    assert parse_caps("usd:50000, EUR:45000") == (Money(50000, "usd"), Money(45000, "eur"))
    for bad in ("usd", "usd:-5", "usd:12.50", "dollars:100", "usd:1,usd:2"):
        with pytest.raises(ValueError, match="refund cap"):
            parse_caps(bad)


def test_default_caps_cover_the_major_currencies_in_their_minor_units() -> None:
    caps = {cap.currency: cap for cap in parse_caps(default_caps_spec())}
    assert set(caps) >= {"usd", "eur", "gbp", "cad", "aud", "jpy", "inr"}
    # 500 dollars is 50000 cents; 75000 yen is 75000 (yen have no minor unit).
    assert caps["usd"].amount_minor == 50000
    assert caps["jpy"].amount_minor == 75000
    for code, cap in caps.items():
        major = currency.to_major(cap.amount_minor, code)
        assert major == DEFAULT_REFUND_CAPS_MAJOR[code], code


def test_refund_caps_setting_is_checked_at_start() -> None:
    database_url = "postgresql://policy@127.0.0.1:5432/unused"
    assert policy_settings(database_url, default_refund_caps="usd:100").default_refund_caps
    with pytest.raises(ValueError, match="refund cap"):
        policy_settings(database_url, default_refund_caps="usd:ten")


def _grant(state: grants.State = grants.State.RESERVED) -> grants.Grant:
    return grants.Grant(
        grant_id="gr_1",
        workspace_id="ws",
        contact_id="ct",
        action=Action.REFUND,
        details=replace(REFUND, stripe_customer_id="cus_1"),
        state=state,
        expires_at=NOW + timedelta(minutes=2),
        created_at=NOW,
        cancellation_grace=None,
    )


def _reason(call: object, *args: object) -> str:
    with pytest.raises(errors.ServiceError) as raised:
        call(*args)  # type: ignore[operator]
    return raised.value.reason


def _redeem(
    grant: grants.Grant,
    details: Details,
    now: datetime = NOW,
    window: timedelta | None = timedelta(days=14),
) -> None:
    grants.check_redeem(grant, Action.REFUND, details, now, refund_window=window)


def test_redeem_rules() -> None:
    grant = _grant()
    _redeem(grant, grant.details)
    bigger = replace(grant.details, amount=Money(2001, "usd"))
    assert _reason(_redeem, grant, bigger) == "GRANT_INVALID"
    redeemed = _grant(grants.State.REDEEMED)
    assert _reason(_redeem, redeemed, grant.details) == "GRANT_ALREADY_REDEEMED"
    with pytest.raises(grants.GrantDue):
        _redeem(grant, grant.details, grant.expires_at)


def test_redeem_compares_the_charge_time_read_from_stripe_to_the_second() -> None:
    grant = _grant()
    created = REFUND.charge_created_at
    assert created is not None
    # Stripe's whole seconds match a grant time with a fraction of the same second.
    fraction = replace(
        grant, details=replace(grant.details, charge_created_at=created.replace(microsecond=250000))
    )
    _redeem(fraction, grant.details)
    for read in (None, created - timedelta(seconds=1), created - timedelta(days=30)):
        changed = replace(grant.details, charge_created_at=read)
        assert _reason(_redeem, grant, changed) == "GRANT_DETAILS_MISMATCH"


def test_redeem_rejudges_the_refund_window() -> None:
    grant = _grant()
    late = grant.expires_at - timedelta(seconds=1)
    assert _reason(_redeem, grant, grant.details, late, timedelta(days=1)) == (
        "REFUND_OUTSIDE_WINDOW"
    )
    # A grant a human approved (no window passed) is not judged again.
    _redeem(grant, grant.details, late, None)


def test_resolution_rules() -> None:
    grants.check_resolve(_grant(), NOW)
    grants.check_resolve(_grant(grants.State.REDEEMED), NOW + timedelta(days=1))
    for state, reason in [
        (grants.State.COMMITTED, "GRANT_ALREADY_RESOLVED"),
        (grants.State.RELEASED, "GRANT_ALREADY_RESOLVED"),
        (grants.State.EXPIRED, "GRANT_EXPIRED"),
    ]:
        assert _reason(grants.check_resolve, _grant(state), NOW) == reason
    assert not _grant(grants.State.REDEEMED).due(NOW + timedelta(days=1))
    # A commit resolves as check_resolve does, except that a RELEASED or EXPIRED grant's is
    # late; a due RESERVED one is expired first.
    assert grants.check_commit(_grant(grants.State.RELEASED), NOW)
    assert grants.check_commit(_grant(grants.State.EXPIRED), NOW)
    assert not grants.check_commit(_grant(grants.State.REDEEMED), NOW)
    assert _reason(grants.check_commit, _grant(grants.State.COMMITTED), NOW) == (
        "GRANT_ALREADY_RESOLVED"
    )
    with pytest.raises(grants.GrantDue):
        grants.check_commit(_grant(), NOW + timedelta(days=1))
    assert not grants.exceeds([3, 2], 3)
    assert grants.exceeds([4, 2], 3)
    assert not grants.exceeds([10**12], None)


_KEYS = audit.MacKeys.parse(f"k1:{base64.b64encode(b'k' * 32).decode()}")
_NEW_KEYS = audit.MacKeys.parse(
    f"k2:{base64.b64encode(b'n' * 32).decode()},k1:{base64.b64encode(b'k' * 32).decode()}"
)


def _entries(count: int) -> list[audit.Entry]:
    return [
        audit.Entry(NOW + timedelta(seconds=n), "visitor", "ct", "decision", amount_minor=n)
        for n in range(count)
    ]


def test_hash_chain_links_entries_and_verifies() -> None:
    chained = audit.chain(_KEYS, "ws", 0, "", _entries(3))
    assert [c.sequence for c in chained] == [1, 2, 3]
    assert chained[0].previous_hash == audit.GENESIS_HASH
    assert chained[1].previous_hash == chained[0].hash
    more = audit.chain(_KEYS, "ws", 3, chained[-1].hash, _entries(1))
    assert more[0].sequence == 4 and more[0].previous_hash == chained[-1].hash
    verifier = audit.Verifier(_KEYS, "ws")
    assert all(verifier.feed(c) for c in [*chained, *more])
    assert verifier.finish(4, more[0].hash) == audit.Verification(True, 4, 0, "")
    assert {c.key_id for c in chained} == {"k1"}


def test_hash_covers_every_field_and_the_workspace() -> None:
    entry = _entries(1)[0]
    base = audit.entry_hash(audit.GENESIS_HASH, "ws", 1, entry)
    assert audit.entry_hash(audit.GENESIS_HASH, "ws2", 1, entry) != base
    assert audit.entry_hash(audit.GENESIS_HASH, "ws", 2, entry) != base
    for changed in (
        replace(entry, outcome="x"),
        replace(entry, occurred_at=entry.occurred_at + timedelta(microseconds=1)),
        replace(entry, actor_id="other"),
        replace(entry, amount_minor=7),
    ):
        assert audit.entry_hash(audit.GENESIS_HASH, "ws", 1, changed) != base


def test_verifier_reports_the_first_break() -> None:
    chained = audit.chain(_KEYS, "ws", 0, "", _entries(4))
    altered = replace(chained[1], entry=replace(chained[1].entry, outcome="forged"))
    verifier = audit.Verifier(_KEYS, "ws")
    for item in [chained[0], altered, *chained[2:]]:
        verifier.feed(item)
    result = verifier.finish(4, chained[-1].hash)
    assert (result.intact, result.first_broken_sequence) == (False, 2)

    verifier = audit.Verifier(_KEYS, "ws")
    for item in [chained[0], chained[2], chained[3]]:
        verifier.feed(item)
    assert verifier.finish(4, chained[-1].hash).first_broken_sequence == 2

    verifier = audit.Verifier(_KEYS, "ws")
    for item in chained[:3]:
        verifier.feed(item)
    result = verifier.finish(4, chained[-1].hash)
    assert (result.intact, result.first_broken_sequence) == (False, 4)


def _plain_chain(count: int) -> list[audit.ChainedEntry]:
    """Entries chained as before the MAC existed: plain SHA-256, no key id."""
    chained = []
    previous = audit.GENESIS_HASH
    for sequence, entry in enumerate(_entries(count), start=1):
        current = audit.entry_hash(previous, "ws", sequence, entry)
        chained.append(audit.ChainedEntry("ws", sequence, entry, previous, current))
        previous = current
    return chained


def _verify(keys: audit.MacKeys, chained: list[audit.ChainedEntry]) -> audit.Verification:
    verifier = audit.Verifier(keys, "ws")
    for item in chained:
        verifier.feed(item)
    return verifier.finish(chained[-1].sequence, chained[-1].hash)


def test_the_chain_is_keyed_and_a_keyless_recomputation_breaks_it() -> None:
    chained = audit.chain(_KEYS, "ws", 0, "", _entries(3))
    entry = chained[0].entry
    assert chained[0].hash != audit.entry_hash(audit.GENESIS_HASH, "ws", 1, entry)
    # Someone without the key rewrites entry 2 and recomputes it and the rest with SHA-256.
    forged = replace(chained[1].entry, amount_minor=999)
    second = audit.entry_hash(chained[0].hash, "ws", 2, forged)
    third = audit.entry_hash(second, "ws", 3, chained[2].entry)
    rewritten = [
        chained[0],
        replace(chained[1], entry=forged, hash=second),
        replace(chained[2], previous_hash=second, hash=third),
    ]
    result = _verify(_KEYS, rewritten)
    assert (result.intact, result.first_broken_sequence) == (False, 2)
    # ... or also drops the key ids: a plain entry after a MAC'd one is refused.
    downgraded = [rewritten[0], *(replace(item, key_id="") for item in rewritten[1:])]
    result = _verify(_KEYS, downgraded)
    assert (result.intact, result.first_broken_sequence) == (False, 2)
    assert "not MAC'd" in result.problem


def test_plain_entries_before_the_switch_verify_and_stay_linked() -> None:
    plain = _plain_chain(3)
    keyed = audit.chain(_KEYS, "ws", 3, plain[-1].hash, _entries(2))
    # Only where the deployment says its log predates the keyed chain.
    result = _verify(_KEYS, [*plain, *keyed])
    assert (result.intact, result.first_broken_sequence) == (False, 1)
    legacy_keys = replace(_KEYS, accepts_unkeyed_prefix=True)
    result = _verify(legacy_keys, [*plain, *keyed])
    assert (result.intact, result.checked, result.unsigned) == (True, 5, 3)
    # A rewrite of the plain prefix, recomputed, breaks the first MAC'd entry's link.
    forged = replace(plain[2].entry, outcome="forged")
    rehashed = replace(
        plain[2], entry=forged, hash=audit.entry_hash(plain[1].hash, "ws", 3, forged)
    )
    result = _verify(legacy_keys, [*plain[:2], rehashed, *keyed])
    assert (result.intact, result.first_broken_sequence) == (False, 4)


def test_rotation_old_entries_verify_under_the_old_key_and_unknown_keys_do_not() -> None:
    old = audit.chain(_KEYS, "ws", 0, "", _entries(2))
    new = audit.chain(_NEW_KEYS, "ws", 2, old[-1].hash, _entries(2))
    assert [c.key_id for c in [*old, *new]] == ["k1", "k1", "k2", "k2"]
    assert _verify(_NEW_KEYS, [*old, *new]).intact
    result = _verify(_KEYS, [*old, *new])  # k2 retired... or never known
    assert (result.intact, result.first_broken_sequence) == (False, 3)
    assert "unknown key" in result.problem


def test_mac_keys_parse_and_refuse_bad_forms() -> None:
    keys = audit.MacKeys.parse(
        f" k2:{base64.b64encode(b'n' * 32).decode()} ,k1:{base64.b64encode(b'k' * 40).decode()}"
    )
    assert keys.signing_key_id == "k2" and set(keys.keys) == {"k1", "k2"}
    for spec in (
        "",
        "k1",
        f"k1:{base64.b64encode(b'short').decode()}",
        "k1:not base64!",
        f"bad id:{base64.b64encode(b'k' * 32).decode()}",
        f"k1:{base64.b64encode(b'k' * 32).decode()},k1:{base64.b64encode(b'n' * 32).decode()}",
    ):
        with pytest.raises(ValueError, match="audit MAC key"):
            audit.MacKeys.parse(spec)


def test_checkpoints_open_only_when_policy_sealed_them() -> None:
    sealed = audit.seal_checkpoint(_KEYS, "ws", 7, "ab" * 32, NOW)
    opened = audit.open_checkpoint(_NEW_KEYS, sealed)  # verifies under a retained old key
    assert opened == audit.Checkpoint("ws", 7, "ab" * 32, NOW, "k1")
    document, _, mac = sealed.partition(".")
    forged_document = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(document + "==").replace(b'"sequence":7', b'"sequence":6')
        )
        .decode()
        .rstrip("=")
    )
    other_key = audit.MacKeys.parse(f"k1:{base64.b64encode(b'x' * 32).decode()}")
    for presented, keys in (
        (f"{forged_document}.{mac}", _KEYS),
        (sealed, other_key),
        (sealed.replace(".", ""), _KEYS),
        ("garbage", _KEYS),
        (sealed, audit.MacKeys.parse(f"k9:{base64.b64encode(b'x' * 32).decode()}")),
    ):
        with pytest.raises(audit.CheckpointError):
            audit.open_checkpoint(keys, presented)


@pytest.mark.parametrize(
    ("period", "now", "zone", "start", "end"),
    [
        # A minute before midnight in New York (UTC-5) is still the day before there.
        (
            Period.CALENDAR_DAY,
            datetime(2026, 3, 2, 4, 59, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 1, 5, 0, tzinfo=UTC),
            datetime(2026, 3, 2, 5, 0, tzinfo=UTC),
        ),
        # The day that loses an hour to summer time is 23 hours long.
        (
            Period.CALENDAR_DAY,
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
            datetime(2026, 3, 9, 4, 0, tzinfo=UTC),
        ),
        # Paris's week starts on Monday at 00:00 local (23:00 UTC on Sunday in winter).
        (
            Period.CALENDAR_WEEK,
            datetime(2026, 1, 4, 23, 30, tzinfo=UTC),
            "Europe/Paris",
            datetime(2026, 1, 4, 23, 0, tzinfo=UTC),
            datetime(2026, 1, 11, 23, 0, tzinfo=UTC),
        ),
        # Tokyo's January ends on 31 January at 15:00 UTC.
        (
            Period.CALENDAR_MONTH,
            datetime(2026, 1, 31, 15, 0, tzinfo=UTC),
            "Asia/Tokyo",
            datetime(2026, 1, 31, 15, 0, tzinfo=UTC),
            datetime(2026, 2, 28, 15, 0, tzinfo=UTC),
        ),
        # Where summer time began at midnight (Sao Paulo, 4 November 2018), the day starts at
        # 01:00 local, the first moment that existed.
        (
            Period.CALENDAR_DAY,
            datetime(2018, 11, 4, 12, 0, tzinfo=UTC),
            "America/Sao_Paulo",
            datetime(2018, 11, 4, 3, 0, tzinfo=UTC),
            datetime(2018, 11, 5, 2, 0, tzinfo=UTC),
        ),
        # UTC stays as it was.
        (
            Period.CALENDAR_MONTH,
            datetime(2026, 12, 31, 23, 59, tzinfo=UTC),
            "UTC",
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_periods_start_at_midnight_in_the_workspace_time_zone(
    period: Period, now: datetime, zone: str, start: datetime, end: datetime
) -> None:
    assert periods.bounds_of(period, now, zone) == (start, end)


def test_time_zone_names_are_checked() -> None:
    assert periods.valid_time_zone("Asia/Kolkata") and periods.valid_time_zone("UTC")
    for name in ("", "Mars/Olympus_Mons", "../etc/passwd", "x" * 100):
        assert not periods.valid_time_zone(name)
