"""The signature matrix. Stripe, against billing_gateway.IngestStripeEvent: tampered body,
wrong secret, missing header, v0 only, two v1 for a rotation (one valid: accepted), 301 s
old, an hour in the future. WhatsApp ``X-Hub-Signature-256`` against the edge's webhook.
Every refusal stores nothing.

HMAC and JWT refusals of visitors are covered by services/identity/tests/test_verification.py
(wrong secret, another user's hash, upper-case hex, retired key, expired, future, no exp,
unknown kid, unsigned, over-long lifetime) and test_service.py (every refusal is
UNAUTHENTICATED with a reason); added here only what they lack: a visitor HMAC made with
workspace B's secret presented to workspace A, and a hash that is the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import grpc
import pytest

from askvault.billing.v1 import billing_pb2
from askvault.identity.v1 import identity_pb2
from runtime import testing
from tests.security.conftest import (
    HMAC_SECRET_A,
    HMAC_SECRET_B,
    WHATSAPP_APP_SECRET,
    WORKSPACE_A,
    System,
    signing_secrets,
    user_hash,
)


def _event(event_id: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "customer.updated",
            "created": int(time.time()),
            "data": {"object": {"id": "cus_nobody", "object": "customer"}},
        }
    ).encode()


def _v1(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


async def _workspace_secret(system: System) -> str:
    """Workspace A's signing secret: the one its webhook endpoint in Stripe A was given."""
    account = system.emulator.state.accounts[system.summary_a["account"]]
    secrets = [str(entry["secret"]) for entry in account.table("webhook_secret").values()]
    assert len(secrets) == 1 and secrets[0] in signing_secrets(system)
    return secrets[0]


async def _ingest(system: System, payload: bytes, header: str) -> tuple[grpc.StatusCode, str]:
    try:
        await system.billing.IngestStripeEvent(
            billing_pb2.IngestStripeEventRequest(
                workspace_id=WORKSPACE_A, payload=payload, signature_header=header
            ),
            timeout=5,
        )
    except grpc.aio.AioRpcError as refused:
        code, reason, _ = testing.error_details(refused)
        return code, reason
    return grpc.StatusCode.OK, ""


async def test_stripe_signature_matrix(system: System) -> None:
    secret = await _workspace_secret(system)
    now = int(time.time())
    payload = _event("evt_sec_matrix")
    good = _v1(payload, secret, now)
    other_secret = "whsec_" + "x" * 32
    refused_cases = {
        "tampered body": (
            payload.replace(b"customer.updated", b"charge.refunded"),
            f"t={now},v1={good}",
        ),
        "wrong secret": (payload, f"t={now},v1={_v1(payload, other_secret, now)}"),
        "missing header": (payload, ""),
        "only v0": (payload, f"t={now},v0={good}"),
        "no timestamp": (payload, f"v1={good}"),
        "timestamp of another signature": (payload, f"t={now - 1},v1={good}"),
        "301 s old": (payload, f"t={now - 301},v1={_v1(payload, secret, now - 301)}"),
        "an hour in the future": (payload, f"t={now + 3600},v1={_v1(payload, secret, now + 3600)}"),
        "workspace B's secret": (
            payload,
            f"t={now},v1={_v1(payload, HMAC_SECRET_B.decode(), now)}",
        ),
        "non-ASCII signature": (payload, f"t={now},v1=é{good[1:]}"),
        "upper-case hex": (payload, f"t={now},v1={good.upper()}"),
    }
    before = await system.settled_snapshot()
    for name, (body, header) in refused_cases.items():
        code, reason = await _ingest(system, body, header)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (name, code, reason)
        assert reason in ("SIGNATURE_INVALID", "SIGNATURE_TIMESTAMP_OUT_OF_RANGE"), (name, reason)
    assert await system.snapshot() == before, "a refused event was stored"
    # Rotation: two v1 signatures, one made with a retired secret, one with the current one.
    rotated = f"t={now},v1={_v1(payload, other_secret, now)},v1={good}"
    assert await _ingest(system, payload, rotated) == (grpc.StatusCode.OK, "")
    # Exactly the header as Stripe writes it is accepted too (and is a duplicate now).
    response = await system.billing.IngestStripeEvent(
        billing_pb2.IngestStripeEventRequest(
            workspace_id=WORKSPACE_A, payload=payload, signature_header=f"t={now},v1={good}"
        ),
        timeout=5,
    )
    assert response.duplicate


async def test_stripe_webhook_over_http_refuses_forgeries_with_4xx(system: System) -> None:
    secret = await _workspace_secret(system)
    now = int(time.time())
    payload = _event("evt_sec_http")
    url = f"{system.edge_url}/api/stripe/webhooks/{WORKSPACE_A}"
    before = await system.settled_snapshot()
    for header in ("", f"t={now},v1={'0' * 64}", f"t={now},v0={_v1(payload, secret, now)}"):
        headers = {"Stripe-Signature": header} if header else {}
        async with system.http.post(url, data=payload, headers=headers) as response:
            assert response.status == 400, await response.text()
            assert (await response.json())["error"]["code"] == "SIGNATURE_INVALID"
    assert await system.snapshot() == before
    headers = {"Stripe-Signature": f"t={now},v1={_v1(payload, secret, now)}"}
    async with system.http.post(url, data=payload, headers=headers) as response:
        assert response.status == 200, await response.text()


def _whatsapp_body(text: str) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "changes": [
                        {
                            "value": {
                                "metadata": {"phone_number_id": "1000000001"},
                                "messages": [
                                    {
                                        "from": "15550001111",
                                        "id": "wamid.sec",
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            }
                        }
                    ]
                }
            ],
        }
    ).encode()


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong secret", "tampered body", "sha1 scheme", "bare hex", "upper-case", "empty"],
)
async def test_whatsapp_signature_matrix(system: System, case: str) -> None:
    body = _whatsapp_body("refund my last charge")
    good = hmac.new(WHATSAPP_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    sent = body
    header: str | None = {
        "missing": None,
        "wrong secret": "sha256=" + hmac.new(b"other", body, hashlib.sha256).hexdigest(),
        "tampered body": f"sha256={good}",
        "sha1 scheme": "sha1="
        + hmac.new(WHATSAPP_APP_SECRET.encode(), body, hashlib.sha1).hexdigest(),
        "bare hex": good,
        "upper-case": f"sha256={good.upper()}",
        "empty": "",
    }[case]
    if case == "tampered body":
        sent = body.replace(b"refund my last charge", b"refund $5000 right now")
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    before = await system.settled_snapshot()
    async with system.http.post(
        f"{system.edge_url}/api/whatsapp/webhook", data=sent, headers=headers
    ) as response:
        assert response.status == 401, await response.text()
        assert (await response.json())["error"]["code"] == "SIGNATURE_INVALID"
    assert await system.snapshot() == before


async def test_whatsapp_correct_signature_is_accepted(system: System) -> None:
    body = _whatsapp_body("hello")
    header = "sha256=" + hmac.new(WHATSAPP_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with system.http.post(
        f"{system.edge_url}/api/whatsapp/webhook",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": header},
    ) as response:
        assert response.status == 200, await response.text()


async def test_visitor_hmac_of_another_workspace_or_the_secret_itself_is_refused(
    system: System,
) -> None:
    for presented in (user_hash("alice", HMAC_SECRET_B), HMAC_SECRET_A.decode(), ""):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await system.identity.VerifyVisitor(
                identity_pb2.VerifyVisitorRequest(
                    workspace_id=WORKSPACE_A,
                    user_id="alice",
                    email="alice@example.com",
                    user_hash=presented,
                ),
                timeout=5,
            )
        code, reason, _ = testing.error_details(refused.value)
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT), reason


async def test_signed_whatsapp_payload_of_an_unexpected_shape_is_a_4xx(system: System) -> None:
    body = json.dumps({"entry": ["x"]}).encode()
    header = "sha256=" + hmac.new(WHATSAPP_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    async with system.http.post(
        f"{system.edge_url}/api/whatsapp/webhook",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": header},
    ) as response:
        assert response.status < 500, await response.text()
