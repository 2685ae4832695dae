"""The table of money actions: every kind of money terms has exactly one entry."""

from __future__ import annotations

from typing import get_args

from askvault.common.v1 import common_pb2 as cpb
from edge import actions
from edge.domain.proposals import MoneyTerms, ProposalKind


def test_every_money_terms_kind_has_its_action_and_nothing_else_does() -> None:
    kinds = {terms.KIND for terms in get_args(MoneyTerms)}
    assert set(actions.ACTIONS) == kinds
    assert ProposalKind.EMAIL_INVOICES not in actions.ACTIONS


def test_each_action_asks_policy_for_its_own_billing_action() -> None:
    # A move by subscribing anew (UPI, an Indian eMandate) is its own action in policy, with
    # its own counter: a grant for one never runs the other.
    assert (
        actions.ACTIONS[ProposalKind.RESUBSCRIBE].billing_action
        == cpb.BILLING_ACTION_START_RESUBSCRIPTION
    )
    assert actions.ACTIONS[ProposalKind.CHANGE_PLAN].billing_action == (
        cpb.BILLING_ACTION_CHANGE_PLAN
    )
    billing_actions = [entry.billing_action for entry in actions.ACTIONS.values()]
    assert len(set(billing_actions)) == len(billing_actions)
    assert cpb.BILLING_ACTION_UNSPECIFIED not in billing_actions
