"""The edge's cache of the workspace terms policy holds (GetWorkspaceTerms), against a real
policy server: served for its TTL, read again after it, and the last terms (else the
WORKSPACE_TIMEZONE fallback) when policy does not answer."""

from __future__ import annotations

import base64

from askvault.policy.v1 import policy_pb2
from edge.peers import Peers
from edge.settings import EdgeSettings
from edge.workspace_terms import TermsCache
from policy.service import PolicyService
from policy.settings import PolicySettings
from runtime import testing

WORKSPACE = "ws_terms"
_AUDIT_KEY = base64.b64encode(b"terms-test-audit-mac-key-0123456789abcdef").decode()


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _set_zone(settings: EdgeSettings, zone: str, prices: list[str], step: int) -> None:
    """Puts bounds with this zone and self-serve list in force (two admins for the zone)."""
    peers = Peers(settings)
    try:
        current = await peers.policy.GetBounds(
            policy_pb2.GetBoundsRequest(workspace_id=WORKSPACE), timeout=5
        )
        bounds = policy_pb2.Bounds()
        bounds.CopyFrom(current.defaults)
        bounds.askvault_plan = policy_pb2.ASK_VAULT_PLAN_BUSINESS
        bounds.time_zone = zone
        bounds.self_serve_price_ids[:] = prices
        proposed = await peers.policy.ProposeBoundsChange(
            policy_pb2.ProposeBoundsChangeRequest(
                workspace_id=WORKSPACE, bounds=bounds, idempotency_key=f"zone-{step}"
            ),
            metadata=testing.admin_metadata("admin-a"),
            timeout=5,
        )
        if proposed.change.state == policy_pb2.BOUNDS_CHANGE_STATE_PENDING:
            await peers.policy.ApproveBoundsChange(
                policy_pb2.ApproveBoundsChangeRequest(
                    workspace_id=WORKSPACE,
                    change_id=proposed.change.change_id,
                    idempotency_key=f"zone-{step}-approve",
                ),
                metadata=testing.admin_metadata("admin-b"),
                timeout=5,
            )
    finally:
        await peers.close()


async def test_terms_are_cached_for_their_ttl_and_fall_back_when_policy_is_away(
    database_url: str,
) -> None:
    settings = testing.make_settings(
        PolicySettings,
        database_url,
        audit_mac_keys=f"a1:{_AUDIT_KEY}",
        default_time_zone="Europe/Paris",
    )
    clock = Clock()
    async with testing.running(PolicyService(settings), settings) as policy:
        edge_settings = testing.make_settings(
            EdgeSettings,
            database_url,
            policy_target=policy.address,
            workspace_timezone="Asia/Tokyo",
            rpc_deadline_seconds=1.0,
        )
        peers = Peers(edge_settings)
        cache = TermsCache(peers, fallback_zone="Asia/Tokyo", ttl_seconds=30, clock=clock)
        # A workspace without bounds: policy's default zone, the default offer.
        first = await cache.get(WORKSPACE)
        assert (first.time_zone, first.self_serve_price_ids) == ("Europe/Paris", ())
        assert first.from_policy and first.refund_caps
        await _set_zone(edge_settings, "America/Chicago", ["price_growth"], 1)
        clock.now += 29
        assert await cache.get(WORKSPACE) == first  # still served from memory
        clock.now += 2
        changed = await cache.get(WORKSPACE)
        assert changed.time_zone == "America/Chicago"
        assert changed.self_serve_price_ids == ("price_growth",)
    # Policy stopped: the last terms read stand in, else the fallback.
    try:
        clock.now += 60
        assert (await cache.get(WORKSPACE)).time_zone == "America/Chicago"
        fresh = TermsCache(peers, fallback_zone="Asia/Tokyo", ttl_seconds=30, clock=clock)
        fallback = await fresh.get(WORKSPACE)
        assert fallback.time_zone == "Asia/Tokyo" and not fallback.from_policy
        assert fallback.self_serve_price_ids == ()
    finally:
        await peers.close()
