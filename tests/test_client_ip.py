"""The client address believes X-Forwarded-For only from SWITCHYARD_TRUSTED_PROXIES."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from config.client_ip import client_address, parse_trusted_proxies, resolve_client_address

PROXIES = parse_trusted_proxies(["10.0.0.0/8", "::1"])


def _request(remote: str, forwarded_for: str | None = None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **headers)


def test_without_trusted_proxies_a_forged_header_is_ignored(settings):
    settings.SWITCHYARD_TRUSTED_PROXIES = []
    assert client_address(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_a_header_from_an_untrusted_peer_is_ignored(settings):
    settings.SWITCHYARD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client(settings):
    settings.SWITCHYARD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(_request("10.1.2.3", "198.51.100.1")) == "198.51.100.1"


def test_a_client_cannot_prepend_its_own_address_through_a_trusted_proxy():
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real peer.
    got = resolve_client_address("10.0.0.5", "1.1.1.1, 198.51.100.7", PROXIES)
    assert got == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_right_to_left():
    got = resolve_client_address("10.0.0.5", "198.51.100.7, 10.9.9.9, 10.0.0.6", PROXIES)
    assert got == "198.51.100.7"


def test_a_malformed_hop_stops_at_the_last_trusted_proxy():
    got = resolve_client_address("10.0.0.5", "198.51.100.7, <script>, 10.0.0.6", PROXIES)
    assert got == "10.0.0.6"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("198.51.100.7:4711", "198.51.100.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
    ],
)
def test_hops_with_ports_and_mapped_addresses_are_read(forwarded, expected):
    assert resolve_client_address("::1", forwarded, PROXIES) == expected


def test_a_missing_peer_is_no_address():
    assert resolve_client_address(None, "198.51.100.7", PROXIES) is None
    assert resolve_client_address("not-an-ip", None, PROXIES) is None


def test_a_bad_proxy_setting_is_refused_with_its_value():
    with pytest.raises(ValueError, match="not-a-net"):
        parse_trusted_proxies(["10.0.0.0/8", "not-a-net"])
