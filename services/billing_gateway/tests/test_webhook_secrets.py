"""Webhook signing secrets rotate and retire, and payment-failure links come from Stripe."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from itertools import count
from typing import Any

import grpc
import pytest

from askvault.billing.v1 import billing_pb2 as pb
from askvault.notifier.v1 import notifier_pb2
from billing_gateway.domain import signatures
from billing_gateway.tests.conftest import WORKSPACE, Stack, key
from runtime import testing

CAROL = "carol@example.com"
_events = count()


def _secrets_by_endpoint(stack: Stack) -> dict[str, str]:
    """Endpoint id -> its signing secret, as the emulator (Stripe) holds them."""
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    return {
        endpoint_id: str(entry["secret"])
        for endpoint_id, entry in account.table("webhook_secret").items()
    }


async def _ingest_signed(stack: Stack, secret: str, event: dict[str, Any] | None = None) -> str:
    """Hands a fresh event signed with ``secret`` to IngestStripeEvent; its event id."""
    body = event or {
        "id": f"evt_rotation_{next(_events)}_{time.time_ns()}",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {}},
    }
    payload = json.dumps(body).encode()
    answer = await stack.billing.IngestStripeEvent(
        pb.IngestStripeEventRequest(
            workspace_id=WORKSPACE,
            payload=payload,
            signature_header=signatures.sign(payload, secret, int(time.time())),
        )
    )
    return str(answer.event_id)


async def _refused_reason(stack: Stack, secret: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _ingest_signed(stack, secret)
    code, reason = testing.error_details(refused.value)[:2]
    return code, reason


async def _rotate(stack: Stack) -> tuple[str, str]:
    """Connects again (a new endpoint and secret); (old endpoint id, new endpoint id)."""
    [old_id] = _secrets_by_endpoint(stack)
    connected = await stack.billing.ConnectAccount(
        pb.ConnectAccountRequest(
            workspace_id=WORKSPACE,
            secret_key=stack.backend.api_key,
            webhook_url=stack.webhook_url,
            idempotency_key=key("rotate"),
        ),
        metadata=testing.admin_metadata(),
    )
    new_id = str(connected.webhook_endpoint_id)
    assert new_id != old_id
    return old_id, new_id


async def _retire(stack: Stack, secret_id: str, overlap: int, idem: str) -> pb.WebhookSecret:
    answer = await stack.billing.RetireWebhookSecret(
        pb.RetireWebhookSecretRequest(
            workspace_id=WORKSPACE,
            secret_id=secret_id,
            overlap_seconds=overlap,
            idempotency_key=idem,
        ),
        metadata=testing.admin_metadata(),
    )
    secret: pb.WebhookSecret = answer.secret
    return secret


async def _listed(stack: Stack) -> dict[str, pb.WebhookSecret]:
    setup = await stack.billing.CheckWebhookSetup(
        pb.CheckWebhookSetupRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    return {secret.secret_id: secret for secret in setup.webhook_secrets}


async def test_retired_secret_verifies_during_the_overlap_and_is_refused_after(
    stack: Stack,
) -> None:
    old_id, new_id = await _rotate(stack)
    secrets = _secrets_by_endpoint(stack)
    old, new = secrets[old_id], secrets[new_id]
    # Rotation: the new secret works while the old one still does.
    await _ingest_signed(stack, old)
    await _ingest_signed(stack, new)

    idem = key("retire")
    retiring = await _retire(stack, old_id, 3600, idem)
    assert retiring.secret_id == old_id and not retiring.retired
    assert retiring.retires_at.ToDatetime().timestamp() == pytest.approx(
        (stack.clock.now + timedelta(seconds=3600)).timestamp(), abs=1
    )
    # The secret itself is never returned.
    assert old.encode() not in retiring.SerializeToString()

    stack.clock.advance(timedelta(seconds=3599))
    await _ingest_signed(stack, old)  # still inside the overlap
    stack.clock.advance(timedelta(seconds=2))
    assert await _refused_reason(stack, old) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SIGNATURE_INVALID",
    )
    await _ingest_signed(stack, new)  # the new secret keeps working

    listed = await _listed(stack)
    assert listed[old_id].retired and listed[old_id].HasField("retires_at")
    assert not listed[new_id].retired and not listed[new_id].HasField("retires_at")
    setup = await stack.billing.CheckWebhookSetup(
        pb.CheckWebhookSetupRequest(workspace_id=WORKSPACE), metadata=testing.admin_metadata()
    )
    assert old.encode() not in setup.SerializeToString()
    assert new.encode() not in setup.SerializeToString()

    # The same key replays the first answer; a later retirement never revives the secret.
    assert await _retire(stack, old_id, 3600, idem) == retiring
    again = await _retire(stack, old_id, 7200, key("retire"))
    assert again.retires_at == retiring.retires_at and again.retired
    assert (await _refused_reason(stack, old))[1] == "SIGNATURE_INVALID"


async def test_retire_at_once_refuses_immediately(stack: Stack) -> None:
    old_id, new_id = await _rotate(stack)
    secrets = _secrets_by_endpoint(stack)
    await _ingest_signed(stack, secrets[old_id])  # the cache knows the old secret
    retired = await _retire(stack, old_id, 0, key("retire"))
    assert retired.retired
    assert await _refused_reason(stack, secrets[old_id]) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SIGNATURE_INVALID",
    )
    await _ingest_signed(stack, secrets[new_id])


async def test_retire_needs_an_admin_a_known_secret_and_a_bounded_overlap(stack: Stack) -> None:
    [secret_id] = _secrets_by_endpoint(stack)
    request = pb.RetireWebhookSecretRequest(
        workspace_id=WORKSPACE, secret_id=secret_id, idempotency_key=key("retire")
    )
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.billing.RetireWebhookSecret(request)
    assert testing.error_details(anonymous.value)[0] == grpc.StatusCode.UNAUTHENTICATED
    unknown = pb.RetireWebhookSecretRequest(
        workspace_id=WORKSPACE, secret_id="we_unknown", idempotency_key=key("retire")
    )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.billing.RetireWebhookSecret(unknown, metadata=testing.admin_metadata())
    assert testing.error_details(missing.value)[0] == grpc.StatusCode.NOT_FOUND
    too_long = pb.RetireWebhookSecretRequest(
        workspace_id=WORKSPACE,
        secret_id=secret_id,
        overlap_seconds=31 * 86_400,
        idempotency_key=key("retire"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stack.billing.RetireWebhookSecret(too_long, metadata=testing.admin_metadata())
    assert testing.error_details(invalid.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing changed: the secret still verifies and is not scheduled for retirement.
    await _ingest_signed(stack, _secrets_by_endpoint(stack)[secret_id])
    assert not (await _listed(stack))[secret_id].HasField("retires_at")


async def test_payment_failed_message_links_to_stripes_invoice_never_the_payloads(
    stack: Stack,
) -> None:
    await stack.assertion(CAROL)
    carol = stack.customer(CAROL)
    invoice_id = stack.demo["customers"][CAROL]["invoices"][-1]
    account = stack.emulator.state.account_for_key(stack.demo["api_key"])
    stripes_link = str(account.get("invoice", invoice_id)["hosted_invoice_url"])
    assert stripes_link.startswith("http")
    [secret] = _secrets_by_endpoint(stack).values()
    evil = "https://evil.example/pay"
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "customer": carol,
        "amount_due": 4900,
        "currency": "usd",
        "attempt_count": 1,
        "hosted_invoice_url": evil,
    }
    event_id = await _ingest_signed(
        stack,
        secret,
        {
            "id": f"evt_evil_link_{time.time_ns()}",
            "type": "invoice.payment_failed",
            "created": int(time.time()),
            "data": {"object": invoice},
        },
    )
    # The same invoice claimed for another customer: nobody else is messaged about it.
    bob = stack.customer("bob@example.com")
    await _ingest_signed(
        stack,
        secret,
        {
            "id": f"evt_other_customer_{time.time_ns()}",
            "type": "invoice.payment_failed",
            "created": int(time.time()),
            "data": {"object": {**invoice, "customer": bob, "id": invoice_id}},
        },
    )
    await stack.service.events.drain()
    status = await stack.event_status(event_id)
    assert status is not None and status.processed_at is not None and status.outcome == ""
    failed = [
        request
        for request in stack.notifier.requests
        if request.template == notifier_pb2.TEMPLATE_PAYMENT_FAILED
    ]
    assert failed, "the payment-failure message was not sent"
    assert all("evil.example" not in str(dict(r.variables)) for r in failed), failed
    assert all(r.variables["update_card_url"] == stripes_link for r in failed), failed
    assert all(r.recipient.email != "bob@example.com" for r in failed), failed
