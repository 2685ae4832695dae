"""Content gating through the edge: the workspace's docs site or widget asks whether the
verified visitor may see a piece of content; identity answers from the contact's tags."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import WORKSPACE, Stack, user_hash


async def _check(
    stack: Stack, visitor: dict[str, str], requirement: dict[str, Any]
) -> tuple[int, dict[str, Any], str]:
    async with stack.http.post(
        f"{stack.edge_url}/v1/access/check",
        json={"workspace_id": WORKSPACE, "visitor": visitor, "requirement": requirement},
    ) as response:
        return response.status, await response.json(), response.headers.get("Cache-Control", "")


def _bob() -> dict[str, str]:
    return {"user_id": "bob", "email": "bob@example.com", "user_hash": user_hash("bob")}


async def test_docs_gated_by_plan_tier_and_status(stack: Stack) -> None:
    # Bob (Starter, active) is linked and tagged by the check itself: no chat turn first.
    status, body, cache = await _check(stack, _bob(), {"minimum_plan_tier": "business"})
    assert status == 200, body
    assert body == {"allowed": False, "unmet": ["minimum_plan_tier"]}
    assert "no-store" in cache
    status, body, _ = await _check(
        stack, _bob(), {"minimum_plan_tier": "starter", "customer_statuses": ["active"]}
    )
    assert (status, body) == (200, {"allowed": True, "unmet": []})
    status, body, _ = await _check(stack, _bob(), {"require_active_trial": True})
    assert body == {"allowed": False, "unmet": ["require_active_trial"]}


async def test_unverified_visitor_and_bad_requirements_are_refused(stack: Stack) -> None:
    forged = {**_bob(), "user_hash": user_hash("alice")}
    status, body, _ = await _check(stack, forged, {"minimum_plan_tier": "free"})
    assert status == 401 and body["error"]["code"] == "VISITOR_NOT_VERIFIED", body
    status, body, _ = await _check(stack, {}, {})
    assert status == 401, body
    status, body, _ = await _check(stack, _bob(), {"minimum_plan_tier": "platinum"})
    assert status == 400, body
    status, body, _ = await _check(stack, _bob(), {"customer_statuses": "active"})
    assert status == 400, body
