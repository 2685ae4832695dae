"""The limits' pure parts: which address a request counts against, and the windows."""

from __future__ import annotations

import pytest

from edge import ratelimit

PROXIES = ratelimit.trusted_networks("10.0.0.0/8, 192.168.1.7, fd00::/8")


def test_a_peer_that_is_not_a_trusted_proxy_is_the_client_whatever_it_forwards() -> None:
    assert ratelimit.client_address("203.0.113.9", ["198.51.100.1"], PROXIES) == "203.0.113.9"
    assert ratelimit.client_address("203.0.113.9", [], ()) == "203.0.113.9"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() -> None:
    # The client wrote "1.1.1.1"; the Ingress appended the real peer; a second proxy hop too.
    chain = ["1.1.1.1, 203.0.113.5", "10.1.2.3"]
    assert ratelimit.client_address("10.0.0.2", chain, PROXIES) == "203.0.113.5"
    assert ratelimit.client_address("192.168.1.7", ["203.0.113.6"], PROXIES) == "203.0.113.6"
    assert ratelimit.client_address("fd00::1", ["2001:db8::5"], PROXIES) == "2001:db8::5"


def test_a_chain_of_only_proxies_or_no_header_counts_against_what_is_there() -> None:
    assert ratelimit.client_address("10.0.0.2", [], PROXIES) == "10.0.0.2"
    assert ratelimit.client_address("10.0.0.2", ["10.0.0.9, 10.0.0.3"], PROXIES) == "10.0.0.9"


def test_ipv4_mapped_peers_are_their_ipv4_address() -> None:
    assert ratelimit.client_address("::ffff:10.0.0.2", ["203.0.113.5"], PROXIES) == "203.0.113.5"


def test_an_ipv6_client_spends_one_budget_for_its_whole_64() -> None:
    assert ratelimit.address_key("2001:db8:1:2::5") == ratelimit.address_key("2001:db8:1:2:ff::9")
    assert ratelimit.address_key("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert ratelimit.address_key("2001:db8:1:3::5") != ratelimit.address_key("2001:db8:1:2::5")
    assert ratelimit.address_key("203.0.113.5") == "203.0.113.5"
    assert ratelimit.address_key("::ffff:203.0.113.5") == "203.0.113.5"


def test_a_full_table_of_live_windows_still_takes_new_keys_and_stays_bounded() -> None:
    limiter = ratelimit.RateLimiter(1, window_seconds=60, max_keys=10)
    for index in range(25):
        assert limiter.allow(f"k{index}", now=1)
    assert limiter.allow("late", now=2)
    assert not limiter.allow("late", now=3)


def test_a_garbage_hop_is_an_untrusted_client_not_an_error() -> None:
    assert ratelimit.client_address("10.0.0.2", ["not-an-ip"], PROXIES) == "not-an-ip"


def test_a_bad_proxy_list_is_refused() -> None:
    with pytest.raises(ValueError, match="ingress"):
        ratelimit.trusted_networks("10.0.0.0/8, ingress")


def test_a_window_starts_at_the_keys_first_hit() -> None:
    limiter = ratelimit.RateLimiter(2, window_seconds=60)
    assert limiter.allow("a", now=59) and limiter.allow("a", now=61)
    # A global window boundary at 60 does not refill the budget.
    assert not limiter.allow("a", now=62)
    assert limiter.would_allow("a", now=119)
    assert limiter.allow("a", now=119)


def test_verified_turns_count_against_contact_and_customer_only_when_both_allow() -> None:
    limits = ratelimit.TurnLimits(
        contact_per_minute=3, customer_per_minute=2, unverified_handoff_emails_per_hour=1
    )
    assert limits.allow("ws", "contact_a", "cus_1")
    assert limits.allow("ws", "contact_b", "cus_1")
    with pytest.raises(ratelimit.RateLimited) as refused:
        limits.check("ws", "contact_a", "cus_1")
    assert refused.value.scope == "customer"
    # The refused turn was not counted against contact_a: two more fit its budget of 3.
    assert limits.allow("ws", "contact_a", "cus_2")
    assert limits.allow("ws", "contact_a", "")
    assert not limits.allow("ws", "contact_a", "")
    # Another workspace's contact of the same id is another budget.
    assert limits.allow("ws_other", "contact_a", "cus_1")
