"""Typed proposal terms at the storage boundary: each kind is stored as the very JSON the edge
has always stored (so rows written before and after read the same) and reads back equal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from edge import storage
from edge.domain.proposals import (
    CancelTerms,
    InvoiceBundleTerms,
    InvoiceRecord,
    Money,
    PauseTerms,
    PlanChangeTerms,
    RefundTerms,
    RetryTerms,
    Terms,
)
from runtime import database

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
CHARGED_AT = datetime(2026, 5, 1, 9, 30, 15, 123456, tzinfo=UTC)
INVOICE = InvoiceRecord(
    invoice_id="in_1",
    number="A-0001",
    status="paid",
    amount_due=Money(4900, "usd"),
    amount_paid=Money(4900, "usd"),
    created_at=CHARGED_AT,
    pdf_url="https://files.example/in_1.pdf",
    hosted_url="https://invoice.example/in_1",
)

# Each kind's terms, and the JSON stored for them (unchanged from the untyped edge).
STORED: list[tuple[Terms, str, dict[str, Any]]] = [
    (
        RefundTerms("ch_1", Money(5000, "jpy"), CHARGED_AT, 2, "Visa •••• 4242", "refund ¥5,000"),
        "refund",
        {
            "charge_id": "ch_1",
            "amount_minor": 5000,
            "currency": "jpy",
            "charge_created_at": CHARGED_AT.isoformat(),
            "reason": 2,
            "card": "Visa •••• 4242",
            "short": "refund ¥5,000",
        },
    ),
    (
        PlanChangeTerms("sub_1", "price_growth", "Growth", "Starter", ("SSO",), "change to Growth"),
        "change_plan",
        {
            "subscription_id": "sub_1",
            "target_price_id": "price_growth",
            "target_name": "Growth",
            "old_name": "Starter",
            "features_gained": ["SSO"],
            "short": "change to Growth",
        },
    ),
    (
        CancelTerms("sub_1", "Starter", "cancel your subscription"),
        "cancel",
        {"subscription_id": "sub_1", "plan": "Starter", "short": "cancel your subscription"},
    ),
    (
        PauseTerms("sub_1", "Starter", "pause your subscription"),
        "pause",
        {"subscription_id": "sub_1", "plan": "Starter", "short": "pause your subscription"},
    ),
    (
        RetryTerms("in_2", "$49", "retry the payment"),
        "retry_payment",
        {"invoice_id": "in_2", "amount": "$49", "short": "retry the payment"},
    ),
    (
        InvoiceBundleTerms("the last 3 months", (INVOICE,)),
        "email_invoices",
        {
            "period": "the last 3 months",
            "invoices": [
                {
                    "invoice_id": "in_1",
                    "number": "A-0001",
                    "status": "paid",
                    "amount_due": {"amount_minor": 4900, "currency": "usd", "display": "$49"},
                    "amount_paid": {"amount_minor": 4900, "currency": "usd", "display": "$49"},
                    "created_at": CHARGED_AT.isoformat(),
                    "pdf_url": "https://files.example/in_1.pdf",
                    "hosted_url": "https://invoice.example/in_1",
                }
            ],
        },
    ),
]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await database.create_pool(database_url, "edge")
    async with created.acquire() as connection:
        await storage.claim_conversation(connection, "ws", "c1", "chat", "ct_1")
    yield created
    await created.close()


@pytest.mark.parametrize(("terms", "kind", "details"), STORED)
async def test_terms_are_stored_as_before_and_read_back_equal(
    pool: asyncpg.Pool, terms: Terms, kind: str, details: dict[str, Any]
) -> None:
    async with pool.acquire() as connection:
        await storage.add_proposal(
            connection,
            workspace_id="ws",
            conversation_id="c1",
            proposal_id="prop_1",
            contact_id="ct_1",
            terms=terms,
            summary="the quote",
            expires_at=NOW + timedelta(minutes=10),
        )
        row = await connection.fetchrow("SELECT kind, details FROM edge.proposals")
        assert row is not None
        assert row["kind"] == kind
        assert json.loads(row["details"]) == details
        async with connection.transaction():
            proposal = await storage.proposal_by_id(connection, "ws", "c1", "prop_1")
    assert proposal is not None
    assert proposal.terms == terms
    assert proposal.kind.value == kind


async def test_rows_without_a_short_name_still_read(pool: asyncpg.Pool) -> None:
    """A money proposal stored without its short name reads with an empty one (the refusal
    then names the proposal by its summary)."""
    async with pool.acquire() as connection:
        await storage.add_proposal(
            connection,
            workspace_id="ws",
            conversation_id="c1",
            proposal_id="prop_1",
            contact_id="ct_1",
            terms=CancelTerms("sub_1", "Starter"),
            summary="the quote",
            expires_at=NOW + timedelta(minutes=10),
        )
        await connection.execute("UPDATE edge.proposals SET details = details - 'short'")
        async with connection.transaction():
            proposal = await storage.newest_proposal(connection, "ws", "c1")
    assert proposal is not None
    assert proposal.terms == CancelTerms("sub_1", "Starter", "")
