"""The limits' pure parts: which address a request counts against (the shared windows are
tested in test_shared_ratelimit.py)."""

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


def test_a_garbage_hop_is_an_untrusted_client_not_an_error() -> None:
    assert ratelimit.client_address("10.0.0.2", ["not-an-ip"], PROXIES) == "not-an-ip"


def test_a_bad_proxy_list_is_refused() -> None:
    with pytest.raises(ValueError, match="ingress"):
        ratelimit.trusted_networks("10.0.0.0/8, ingress")
