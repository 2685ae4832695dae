"""Confirmations only from the person: every money action needs one, and confirmed = true
counts only with a Confirmation whose quote is exactly the request's terms, unexpired, with
a channel; the audit entry keeps the quote the person saw."""

from __future__ import annotations

from datetime import UTC, timedelta

import asyncpg
import pytest

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from runtime import testing

from .conftest import QUOTE_TTL, Policy, confirm, usd

UNCOUNTED = [
    (common_pb2.BILLING_ACTION_RETRY_PAYMENT, pb.ActionDetails(invoice_id="in_1")),
    (common_pb2.BILLING_ACTION_CANCEL_SUBSCRIPTION, pb.ActionDetails(subscription_id="sub_1")),
    (common_pb2.BILLING_ACTION_PAUSE_SUBSCRIPTION, pb.ActionDetails(subscription_id="sub_1")),
    (common_pb2.BILLING_ACTION_RESUME_SUBSCRIPTION, pb.ActionDetails(subscription_id="sub_1")),
]


async def _escalations(policy: Policy) -> int:
    connection = await asyncpg.connect(policy.database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM policy.escalations WHERE workspace_id = $1",
            policy.workspace_id,
        )
    finally:
        await connection.close()
    return int(count)


async def _decisions(policy: Policy) -> list[pb.AuditEvent]:
    response = await policy.stub.ListAuditEvents(
        pb.ListAuditEventsRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    return [event for event in response.events if event.kind == "decision"]


@pytest.mark.parametrize(("action", "details"), UNCOUNTED)
async def test_retry_cancel_pause_resume_need_the_persons_confirmation(
    policy: Policy, action: common_pb2.BillingAction.ValueType, details: pb.ActionDetails
) -> None:
    # Attack: a model calls the action straight away, nobody said yes.
    unconfirmed = await policy.stub.Authorize(policy.action(action, details, confirmed=False))
    assert (unconfirmed.decision, unconfirmed.reason) == (
        pb.DECISION_NEEDS_CONFIRMATION,
        pb.DECISION_REASON_CONFIRMATION_REQUIRED,
    )
    assert not unconfirmed.HasField("grant")
    # It cannot claim a yes either.
    claimed = policy.action(action, details, confirmed=False)
    claimed.confirmed = True
    refused = await policy.stub.Authorize(claimed)
    assert (refused.decision, refused.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_CONFIRMATION_INVALID,
    )
    assert not refused.HasField("grant")
    confirmed = await policy.stub.Authorize(policy.action(action, details))
    assert (confirmed.decision, confirmed.reason) == (
        pb.DECISION_ALLOW,
        pb.DECISION_REASON_WITHIN_BOUNDS,
    )
    assert confirmed.grant.grant_id.startswith("gr_")


def _wrong_hash(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.confirmation.quote.terms_hash = "0" * 64


def _larger_amount_than_quoted(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.details.amount.amount_minor = 40000


def _another_charge(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.details.charge_id = "ch_other"


def _another_summary(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.confirmation.quote.summary = "Refund $400"


def _no_channel(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.confirmation.channel = pb.CONFIRMATION_CHANNEL_UNSPECIFIED


def _no_confirmation(policy: Policy, request: pb.AuthorizeRequest) -> None:
    request.ClearField("confirmation")


def _expired(policy: Policy, request: pb.AuthorizeRequest) -> None:
    # Past the quote's expiry by more than the clock skew allowed.
    policy.clock.advance(QUOTE_TTL + timedelta(seconds=31))


def _extended_expiry(policy: Policy, request: pb.AuthorizeRequest) -> None:
    # The model moves the expiry of a quote without rehashing: the hash no longer matches.
    request.confirmation.quote.expires_at.seconds += 3600
    policy.clock.advance(QUOTE_TTL + timedelta(seconds=31))


def _another_contacts_quote(policy: Policy, request: pb.AuthorizeRequest) -> None:
    quoted = confirm(
        policy.refund(1000, confirmed=False),
        "ct_bob",
        expires_at=policy.clock() + QUOTE_TTL,
    )
    request.confirmation.CopyFrom(quoted.confirmation)


@pytest.mark.parametrize(
    "tamper",
    [
        _wrong_hash,
        _larger_amount_than_quoted,
        _another_charge,
        _another_summary,
        _no_channel,
        _no_confirmation,
        _expired,
        _extended_expiry,
        _another_contacts_quote,
    ],
)
async def test_an_invalid_confirmation_is_denied_audited_and_reserves_nothing(
    policy: Policy, tamper: object
) -> None:
    assert callable(tamper)
    request = policy.refund(1000)
    tamper(policy, request)
    response = await policy.stub.Authorize(request)
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_CONFIRMATION_INVALID,
    )
    assert not response.HasField("grant")
    assert not response.escalation_id
    assert await policy.counter() == 0
    assert await policy.customer_counter() == 0
    assert await _escalations(policy) == 0
    (decision,) = await _decisions(policy)
    assert decision.outcome == "DENY:CONFIRMATION_INVALID"
    # The same key gives the same answer.
    assert await policy.stub.Authorize(request) == response


async def test_a_quote_just_past_its_expiry_is_accepted_within_the_clock_skew(
    policy: Policy,
) -> None:
    request = policy.refund(1000)
    policy.clock.advance(QUOTE_TTL + timedelta(seconds=2))
    response = await policy.stub.Authorize(request)
    assert response.decision == pb.DECISION_ALLOW


async def test_an_over_cap_amount_with_a_tampered_quote_opens_no_escalation(
    policy: Policy,
) -> None:
    request = policy.refund(1000)
    request.details.amount.amount_minor = 90000
    response = await policy.stub.Authorize(request)
    assert response.reason == pb.DECISION_REASON_CONFIRMATION_INVALID
    assert await _escalations(policy) == 0


@pytest.mark.parametrize(
    "seconds",
    [-62_135_596_800, 253_402_300_799],  # 0001-01-01 and 9999-12-31T23:59:59, the extremes
)
async def test_a_quote_at_the_edge_of_time_is_refused_or_hashed_without_error(
    policy: Policy, seconds: int
) -> None:
    request = policy.refund(1000)
    request.confirmation.quote.expires_at.seconds = seconds
    response = await policy.stub.Authorize(request)
    assert (response.decision, response.reason) == (
        pb.DECISION_DENY,
        pb.DECISION_REASON_CONFIRMATION_INVALID,
    )
    (decision,) = await _decisions(policy)
    assert decision.confirmation.quote.expires_at.seconds == seconds
    verified = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    assert verified.intact


@pytest.mark.parametrize(
    "channel",
    [
        pb.CONFIRMATION_CHANNEL_CHAT_TURN,
        pb.CONFIRMATION_CHANNEL_CONFIRM_ENDPOINT,
        pb.CONFIRMATION_CHANNEL_MCP_ELICITATION,
        pb.CONFIRMATION_CHANNEL_WHATSAPP_REPLY,
    ],
)
async def test_the_audit_entry_carries_the_quote_the_person_saw(
    policy: Policy, channel: pb.ConfirmationChannel.ValueType
) -> None:
    request = confirm(
        policy.refund(2500, confirmed=False),
        "ct_alice",
        expires_at=policy.clock() + QUOTE_TTL,
        channel=channel,
        summary="Refund $25.00 of charge ch_1 to your Visa",
    )
    response = await policy.stub.Authorize(request)
    assert response.decision == pb.DECISION_ALLOW
    (decision,) = await _decisions(policy)
    assert decision.outcome == "ALLOW:WITHIN_BOUNDS"
    assert decision.subject_id == response.grant.grant_id
    assert decision.amount == usd(2500)
    quote = decision.confirmation.quote
    sent = request.confirmation.quote
    assert quote.quote_id == sent.quote_id
    assert quote.summary == "Refund $25.00 of charge ch_1 to your Visa"
    assert quote.terms_hash == sent.terms_hash
    assert quote.expires_at.ToDatetime(UTC) == sent.expires_at.ToDatetime(UTC)
    assert decision.confirmation.channel == channel
    assert decision.confirmation.confirmed_at == request.confirmation.confirmed_at
    verified = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    assert verified.intact


async def test_the_stored_quote_is_covered_by_the_audit_hash(policy: Policy) -> None:
    response = await policy.stub.Authorize(policy.refund(2500))
    assert response.decision == pb.DECISION_ALLOW
    (decision,) = await _decisions(policy)
    connection = await asyncpg.connect(policy.database_url)
    try:
        await connection.execute(
            "ALTER TABLE policy.audit_events DISABLE TRIGGER audit_events_append_only"
        )
        await connection.execute(
            "UPDATE policy.audit_events"
            " SET confirmation = jsonb_set(confirmation, '{summary}', '\"Refund $1\"')"
            " WHERE workspace_id = $1 AND sequence = $2",
            policy.workspace_id,
            decision.sequence,
        )
        await connection.execute(
            "ALTER TABLE policy.audit_events ENABLE TRIGGER audit_events_append_only"
        )
    finally:
        await connection.close()
    verified = await policy.stub.VerifyAuditChain(
        pb.VerifyAuditChainRequest(workspace_id=policy.workspace_id),
        metadata=testing.admin_metadata(),
    )
    assert (verified.intact, verified.first_broken_sequence) == (False, decision.sequence)


async def test_an_unconfirmed_refund_is_not_audited_with_a_quote(policy: Policy) -> None:
    response = await policy.stub.Authorize(policy.refund(1000, confirmed=False))
    assert response.decision == pb.DECISION_NEEDS_CONFIRMATION
    (decision,) = await _decisions(policy)
    assert not decision.HasField("confirmation")
