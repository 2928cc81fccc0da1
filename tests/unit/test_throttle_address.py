"""Who a budget belongs to: the client address behind trusted proxies, and the budget keys of a request."""

from __future__ import annotations

import ipaddress

import pytest
from psycopg_pool import ConnectionPool
from starlette.requests import Request

from api.retailers import hash_key
from api.settings import Settings
from api.throttle import Throttle, client_address, parse_ip

PROXIES = Settings(trusted_proxies="10.0.0.0/8, 2001:db8:ffff::1").trusted_proxies


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:51234", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
    ],
)
def test_an_address_is_read_with_or_without_a_port(text: str, expected: str) -> None:
    assert parse_ip(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", ["", "unknown", "_hidden", "300.1.1.1", "[2001:db8::1", "1.2.3.4:5:6", "\x00", "a,b"])
def test_what_is_not_an_address_is_none(text: str) -> None:
    assert parse_ip(text) is None


def test_without_trusted_proxies_the_peer_is_the_client_whatever_x_forwarded_for_says() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], ()) == "203.0.113.7"
    assert client_address("10.0.0.1", ["198.51.100.1"], ()) == "10.0.0.1"


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1, 10.0.0.2"], PROXIES) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_client_is_the_right_most_hop_that_is_not_a_proxy() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1"], PROXIES) == "198.51.100.1"
    # What the client wrote itself is left of the address the proxies appended.
    assert client_address("10.0.0.1", ["1.1.1.1, 198.51.100.1, 10.0.0.3"], PROXIES) == "198.51.100.1"
    assert client_address("10.0.0.1", ["1.1.1.1", "198.51.100.1, 10.0.0.3"], PROXIES) == "198.51.100.1"


def test_a_malformed_hop_stops_at_the_last_trusted_address_and_never_fails() -> None:
    assert client_address("10.0.0.1", ["198.51.100.1, garbage, 10.0.0.3"], PROXIES) == "10.0.0.3"
    assert client_address("10.0.0.1", ["198.51.100.1,,"], PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", ["\x7f\xff, [::1"], PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", [], PROXIES) == "10.0.0.1"


def test_only_trusted_proxies_in_the_chain_gives_the_left_most_one() -> None:
    assert client_address("10.0.0.1", ["10.9.9.9, 10.0.0.2"], PROXIES) == "10.9.9.9"


def test_an_ipv6_client_is_counted_by_its_64_and_proxies_match_by_version() -> None:
    assert client_address("2001:db8:1:2:3:4:5:6", [], PROXIES) == "2001:db8:1:2::/64"
    assert client_address("2001:db8:ffff::1", ["2001:db8:aaaa:1::9"], PROXIES) == "2001:db8:aaaa:1::/64"
    assert client_address("[2001:db8:ffff::1]:8080", ["203.0.113.7"], PROXIES) == "203.0.113.7"


def test_a_peer_that_is_not_an_ip_is_used_as_it_is() -> None:
    assert client_address("testclient", ["198.51.100.1"], PROXIES) == "testclient"
    assert client_address(None, [], PROXIES) == "unknown"


def request(peer: str, *headers: tuple[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "client": (peer, 1234)})


@pytest.fixture
def throttle() -> Throttle:
    return Throttle(ConnectionPool("", open=False), budget=20, window_seconds=60, trusted_proxies=PROXIES)


def test_a_budget_key_names_the_api_key_by_its_hash_and_the_customer_else_the_address(throttle: Throttle) -> None:
    key = "cl_secret-key"
    auth = ("Authorization", f"Bearer {key}")
    assert throttle.budget_keys(request("203.0.113.7", auth), "cust-1", False) == [f"{hash_key(key)}:customer:cust-1"]
    assert throttle.budget_keys(request("203.0.113.7", auth), None, False) == [f"{hash_key(key)}:addr:203.0.113.7"]
    forwarded = request("10.0.0.1", auth, ("X-Forwarded-For", "198.51.100.1"))
    assert throttle.budget_keys(forwarded, None, False) == [f"{hash_key(key)}:addr:198.51.100.1"]
    assert all(key not in budget_key for budget_key in throttle.budget_keys(forwarded, "c", True))


def test_count_address_adds_the_address_to_the_customer(throttle: Throttle) -> None:
    auth = ("Authorization", "Bearer pk_page-key")
    owner = hash_key("pk_page-key")
    assert throttle.budget_keys(request("203.0.113.7", auth), "cust-1", True) == [
        f"{owner}:customer:cust-1",
        f"{owner}:addr:203.0.113.7",
    ]
    assert throttle.budget_keys(request("203.0.113.7", auth), None, True) == [f"{owner}:addr:203.0.113.7"]
