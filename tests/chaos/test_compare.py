"""The chaos reconciliation's comparisons find a planted difference (and none when the
sources agree): plan changes both ways against Stripe's own history, cancellations and what
the visitor was told, the messages of ledger outcomes, the dead letters, WhatsApp statuses,
the mirror."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chaos import compare
from chaos.reconcile_flows import known_finding, reported_statuses, subscription_snapshots

GROWTH, BUSINESS = "price_growth", "price_business"


def _change(operation_id: str, subscription: str, price: str, at: float) -> compare.Operation:
    return compare.Operation(operation_id, "change_plan", "succeeded", subscription, "", price, at)


def _sub(subscription: str, price: str, status: str = "active") -> compare.Subscription:
    return compare.Subscription(subscription, status, price)


def test_price_moves_count_each_change_of_price_in_a_subscriptions_history() -> None:
    history = [("sub_1", GROWTH), ("sub_1", GROWTH), ("sub_1", BUSINESS), ("sub_1", GROWTH)]
    assert compare.price_moves(history) == Counter({("sub_1", BUSINESS): 1, ("sub_1", GROWTH): 1})


def test_plan_changes_that_agree_with_stripe_have_no_difference() -> None:
    operations = [_change("op_1", "sub_1", BUSINESS, 1), _change("op_2", "sub_1", GROWTH, 2)]
    moves = Counter({("sub_1", BUSINESS): 1, ("sub_1", GROWTH): 1})
    subscriptions = {"sub_1": _sub("sub_1", GROWTH)}
    assert compare.plan_changes(operations, subscriptions, moves, {"sub_1": GROWTH}) == []


def test_a_succeeded_change_stripe_never_applied_is_reported() -> None:
    # Upgrade and downgrade both succeeded in the ledger; Stripe only ever saw none: its
    # final price is right (Growth), only the history shows the upgrade never happened.
    operations = [_change("op_1", "sub_1", BUSINESS, 1), _change("op_2", "sub_1", GROWTH, 2)]
    subscriptions = {"sub_1": _sub("sub_1", GROWTH)}
    found = compare.plan_changes(operations, subscriptions, Counter(), {"sub_1": GROWTH})
    assert any("sub_1 to price_business that Stripe never applied" in d for d in found), found


def test_a_stripe_price_change_with_no_ledger_operation_is_reported() -> None:
    subscriptions = {"sub_1": _sub("sub_1", BUSINESS)}
    moves = Counter({("sub_1", BUSINESS): 1})
    # The ledger failed the change (it found it not done) while Stripe made it.
    failed = compare.Operation("op_1", "change_plan", "failed", "sub_1", "", BUSINESS, 1)
    found = compare.plan_changes([failed], subscriptions, moves, {"sub_1": GROWTH})
    assert any(
        "Stripe moved sub_1 to price_business 1 time(s) with no succeeded plan change in the "
        "ledger (ledger: op_1 failed)" in d
        for d in found
    ), found
    assert any("the ledger's last plan change says price_growth" in d for d in found), found


def test_cancellations_consistent_with_stripe_and_the_visitor_have_no_difference() -> None:
    operations = [
        compare.Operation("op_1", "cancel_subscription", "succeeded", "sub_1", scheduled=True),
        compare.Operation("op_2", "cancel_subscription", "voided", "sub_2", scheduled=True),
    ]
    subscriptions = {"sub_1": _sub("sub_1", GROWTH, "canceled"), "sub_2": _sub("sub_2", GROWTH)}
    told = {"sub_1": "too late", "sub_2": "undone"}
    assert compare.cancellations(operations, subscriptions, told) == []


def test_an_undone_cancellation_that_stripe_ran_anyway_is_reported() -> None:
    operations = [
        compare.Operation("op_2", "cancel_subscription", "voided", "sub_2", scheduled=True)
    ]
    subscriptions = {"sub_2": _sub("sub_2", GROWTH, "canceled")}
    found = compare.cancellations(operations, subscriptions, {"sub_2": "undone"})
    assert any("sub_2 canceled with no succeeded cancellation" in d for d in found), found
    assert any("told the cancellation of sub_2 was undone" in d for d in found), found


def test_a_succeeded_cancellation_stripe_does_not_show_is_reported() -> None:
    operations = [
        compare.Operation("op_1", "cancel_subscription", "succeeded", "sub_1", scheduled=True),
        compare.Operation("op_3", "cancel_subscription", "scheduled", "sub_3", scheduled=True),
    ]
    subscriptions = {"sub_1": _sub("sub_1", GROWTH), "sub_3": _sub("sub_3", GROWTH)}
    found = compare.cancellations(operations, subscriptions, {"sub_1": "too late"})
    assert any("op_1 succeeded but Stripe has sub_1 active" in d for d in found), found
    assert any("told it was too late" in d for d in found), found
    assert any("op_3 of sub_3 is still scheduled" in d for d in found), found


def _email(message_id: str, dedup: str, status: str = "sent") -> compare.OutboxMessage:
    return compare.OutboxMessage(message_id, dedup, "email", status)


def test_expected_messages_in_the_outbox_and_at_the_sink_have_no_difference() -> None:
    expected = [compare.Expected("refund-evt_1-", "refund"), compare.Expected("edge:wa:w1", "wa")]
    outbox = [
        _email("msg_1", "refund-evt_1-ct_1"),
        compare.OutboxMessage("msg_2", "edge:wa:w1", "whatsapp", "delivered", "wamid.1"),
    ]
    found = compare.messages(expected, outbox, {"msg_1": 1}, {"wamid.1": 1})
    assert found == []


def test_a_missing_and_a_duplicated_message_are_reported() -> None:
    expected = [
        compare.Expected("template_plan_change_confirmation-op_1-", "plan change op_1"),
        compare.Expected("payment-failed-in_1-", "the failed payment of in_1"),
        compare.Expected("refund-evt_1-", "the refund"),
    ]
    outbox = [
        _email("msg_1", "payment-failed-in_1-ct_1"),
        _email("msg_2", "refund-evt_1-ct_1"),
        _email("msg_3", "refund-evt_1-stripe-customer-cus_1"),
    ]
    found = compare.messages(expected, outbox, {"msg_1": 2, "msg_2": 0, "msg_3": 1}, {})
    assert any(d.startswith("2 messages in the outbox for the refund: msg_2") for d in found)
    assert any(d.startswith("no message in the outbox for plan change op_1") for d in found)
    # The same Message-ID twice at the sink is a re-send across a crash, kept once by the
    # receiver: not a difference (two outbox messages for one outcome are).
    assert not any("msg_1" in d for d in found), found
    assert any("msg_2 is sent but never reached the SMTP sink" in d for d in found), found


def test_dead_letters_match_what_the_sink_refused_for_good() -> None:
    outbox = [
        _email("msg_1", "a", "dead"),
        _email("msg_2", "b", "sent"),
        _email("msg_3", "c", "dead"),
        _email("msg_4", "d", "sent"),
    ]
    # msg_1 refused and dead (agrees); msg_2 refused and never taken but not dead; msg_3 dead
    # though the sink never refused it; msg_4 refused once, then taken (agrees).
    refused = {"msg_1": 550, "msg_2": 550, "msg_4": 550}
    found = compare.dead_letters(outbox, refused, {"msg_4": 1})
    assert found == [
        "the sink refused msg_2 for good (550) and never took it, but the outbox has it sent, "
        "not dead",
        "msg_3 is dead but the sink never refused it",
    ]


def test_a_whatsapp_status_the_outbox_did_not_apply_is_reported() -> None:
    webhooks = [
        {"status": 200, "body": _statuses(("wamid.1", "sent"), ("wamid.1", "delivered"))},
        {"status": 200, "body": _statuses(("wamid.2", "delivered"))},
        {"status": 0, "body": _statuses(("wamid.3", "delivered"))},
    ]
    reported = reported_statuses(webhooks)
    assert reported == {"wamid.1": "delivered", "wamid.2": "delivered"}
    outbox = [
        compare.OutboxMessage("msg_1", "k1", "whatsapp", "delivered", "wamid.1"),
        compare.OutboxMessage("msg_2", "k2", "whatsapp", "sent", "wamid.2"),
        compare.OutboxMessage("msg_3", "k3", "whatsapp", "sent", "wamid.3"),
    ]
    assert compare.whatsapp_statuses(outbox, reported) == [
        "WhatsApp reported wamid.2 delivered, the outbox has msg_2 sent"
    ]


def _statuses(*pairs: tuple[str, str]) -> dict[str, object]:
    statuses = [{"id": wamid, "status": status} for wamid, status in pairs]
    return {"entry": [{"changes": [{"value": {"statuses": statuses}}]}]}


def test_subscription_snapshots_read_the_price_of_each_subscription_event() -> None:
    def event(kind: str, price: str) -> dict[str, Any]:
        items = {"data": [{"price": {"id": price}}]}
        return {"type": kind, "data": {"object": {"id": "sub_1", "items": items}}}

    events: list[dict[str, Any]] = [
        event("customer.subscription.created", GROWTH),
        {"type": "charge.refunded", "data": {"object": {"id": "ch_1"}}},
        event("customer.subscription.updated", BUSINESS),
    ]
    assert subscription_snapshots(events) == [("sub_1", GROWTH), ("sub_1", BUSINESS)]


def test_the_mirror_against_stripe_reports_status_price_and_refunded_amount() -> None:
    def subscription(status: str, price: str) -> dict[str, object]:
        return {"id": "sub_1", "status": status, "items": {"data": [{"price": {"id": price}}]}}

    listed: dict[str, list[dict[str, object]]] = {
        "subscription": [subscription("canceled", BUSINESS)],
        "charge": [
            {"id": "ch_1", "status": "succeeded", "amount_refunded": 500, "refunded": False}
        ],
    }
    agreeing = {
        ("subscription", "sub_1"): {**subscription("canceled", BUSINESS), "deleted": False},
        ("charge", "ch_1"): {**listed["charge"][0], "deleted": False},
    }
    assert compare.mirror(agreeing, listed) == ([], 2)
    stale = {
        ("subscription", "sub_1"): {**subscription("active", GROWTH), "deleted": False},
        ("charge", "ch_1"): {**listed["charge"][0], "amount_refunded": 0, "deleted": False},
        ("charge", "ch_gone"): {"id": "ch_gone", "deleted": False},
    }
    differences, _ = compare.mirror(stale, listed)
    assert differences == [
        "mirror subscription sub_1 status: 'active', Stripe 'canceled'",
        "mirror subscription sub_1 price: 'price_growth', Stripe 'price_business'",
        "mirror charge ch_1 amount_refunded: 0, Stripe 500",
        "mirror holds charge ch_gone, Stripe lists none",
    ]


def test_the_findings_fixed_fail_the_run_again() -> None:
    # Fixed (the gateway decides once per invoice whom its failure is told): a difference.
    assert not known_finding(
        "2 messages in the outbox for the failed payment of in_1: msg_1 "
        "(payment-failed-in_1-stripe-customer-cus_1), msg_2 (payment-failed-in_1-ct_1)"
    )
    # Fixed (a confirmation is recorded with the outcome it confirms): a difference.
    assert not known_finding("no message in the outbox for plan change op_1 (template_plan_...)")
    assert not known_finding("no message in the outbox for cancellation op_1 scheduled (...)")
    assert not known_finding("2 messages in the outbox for the refund of ch_1 (evt_1): ...")
    assert not known_finding("Stripe moved sub_1 to price_b 1 time(s) with no succeeded ...")
    assert not known_finding("no message in the outbox for WhatsApp question wamid.1 (...)")
