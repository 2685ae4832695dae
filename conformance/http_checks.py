"""The edge's HTTP side of the contract: probes, the OpenAPI document, JSON error bodies and
the webhooks' signature refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from openapi_spec_validator import validate

from conformance.report import expect
from conformance.target import Target


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    expect(
        response.content_type == "application/json",
        f"{response.status} with {response.content_type}, not JSON",
    )
    body: dict[str, Any] = await response.json()
    return body


def _error_code(body: dict[str, Any]) -> str:
    error = body.get("error")
    expect(isinstance(error, dict) and bool(error.get("code")), f"no error.code in {body}")
    assert isinstance(error, dict)
    return str(error["code"])


async def probes(http: aiohttp.ClientSession, target: Target) -> str:
    for path in ("/healthz", "/readyz"):
        async with http.get(f"{target.edge_url}{path}") as response:
            expect(response.status == 200, f"{path} answered {response.status}")
    return "/healthz and /readyz 200"


async def openapi_document(http: aiohttp.ClientSession, target: Target) -> str:
    async with http.get(f"{target.edge_url}/openapi.json") as response:
        expect(response.status == 200, f"/openapi.json answered {response.status}")
        document = await _json(response)
    validate(document)
    expect(str(document.get("openapi", "")).startswith("3.1"), "not OpenAPI 3.1")
    expect("/v1/chat/turns" in document.get("paths", {}), "the chat turn is not documented")
    return f"OpenAPI {document['openapi']}, {len(document['paths'])} paths, valid"


async def json_errors(http: aiohttp.ClientSession, target: Target) -> str:
    """An unknown path and an invalid turn are refused with a JSON body naming the problem."""
    async with http.get(f"{target.edge_url}/conformance/no-such-path") as response:
        expect(response.status == 404, f"an unknown path answered {response.status}")
        unknown = _error_code(await _json(response))
    turn = {"workspace_id": target.workspace_id, "conversation_id": "conformance", "text": ""}
    async with http.post(f"{target.edge_url}/v1/chat/turns", json=turn) as response:
        expect(response.status == 400, f"an empty turn answered {response.status}")
        body = await _json(response)
    invalid = _error_code(body)
    expect("text" in body["error"].get("fields", {}), f"the empty text is not named: {body}")
    async with http.post(
        f"{target.edge_url}/v1/chat/turns",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        expect(response.status == 400, f"a malformed body answered {response.status}")
        malformed = _error_code(await _json(response))
    return f"404 {unknown}; 400 {invalid} naming text; 400 {malformed}"


async def stripe_webhook_signature(http: aiohttp.ClientSession, target: Target) -> str:
    """A Stripe event with a forged signature is refused and changes nothing."""
    event = {"id": "evt_conformance", "object": "event", "type": "charge.refunded", "data": {}}
    payload = json.dumps(event).encode()
    url = f"{target.edge_url}/api/stripe/webhooks/{target.workspace_id}"
    forged = f"t={int(time.time())},v1={'0' * 64}"
    codes = []
    for headers in ({}, {"Stripe-Signature": forged}):
        async with http.post(
            url, data=payload, headers={"Content-Type": "application/json", **headers}
        ) as response:
            expect(response.status == 400, f"a forged event answered {response.status}")
            codes.append(_error_code(await _json(response)))
    return f"missing and forged Stripe-Signature: 400 {', '.join(codes)}"


async def whatsapp_webhook_signature(http: aiohttp.ClientSession, target: Target) -> str:
    payload = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    async with http.post(
        f"{target.edge_url}/api/whatsapp/webhook",
        data=payload,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    ) as response:
        expect(response.status == 401, f"a forged WhatsApp post answered {response.status}")
        code = _error_code(await _json(response))
    return f"forged X-Hub-Signature-256: 401 {code}"
