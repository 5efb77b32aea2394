"""f5.host validation: host names and IP addresses only (issue 11)."""

from __future__ import annotations

import pytest

from controller.config.hostnames import bare, problem


@pytest.mark.parametrize("host", ["bigip-a.example.com", "bigip1", "10.0.0.1", "2001:db8::1", "[2001:db8::1]", "::1",
                                  "a" * 63 + ".example.com", "bigip.example.com."])
def test_accepted(host):
    assert problem(host) == ""


@pytest.mark.parametrize("host, why", [
    ("", "must not be empty"),
    ("big ip", "white space"),
    ("10.0.0.1:8443", "carries a port; put 8443 in f5.port"),
    ("bigip.example.com:443", "carries a port"),
    ("[::1", "unbalanced bracket"),
    ("::1]", "unbalanced bracket"),
    ("[bigip]", "only an IPv6 address goes in brackets"),
    ("https://10.0.0.1", "not a URL"),
    ("10.0.0.256", "not an IPv4 address"),
    ("bad_name.example.com", "not a host name"),
    ("-bigip.example.com", "not a host name"),
    ("a" * 64 + ".example.com", "not a host name"),
    ("a." * 130, "at most 253"),
    ("2001:db8::zz", "not an IPv6 address"),
])
def test_refused(host, why):
    assert why in problem(host)


def test_bare_strips_ipv6_brackets():
    assert bare("[::1]") == "::1" and bare("10.0.0.1") == "10.0.0.1"
