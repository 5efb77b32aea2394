"""Is this string a host name or an IP address? (f5.host; no port, no scheme, no brackets left open)."""

from __future__ import annotations

import ipaddress
import re

MAX_NAME = 253  # RFC 1035: a full domain name in text form
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def problem(host: str) -> str:
    """Why `host` is not a host name or IP address, or "" when it is one.

    Accepted: an RFC 1123 host name (`bigip-a.example.com`), an IPv4 address, an IPv6 address bare or
    in brackets (`2001:db8::1`, `[2001:db8::1]`). Refused: spaces, a port (`10.0.0.1:8443`: use
    f5.port), a URL, an unclosed bracket, labels over 63 or names over 253 characters.
    """
    if not host:
        return "must not be empty"
    if len(host) > MAX_NAME:
        return f"is {len(host)} characters long; a host name has at most {MAX_NAME}"
    if any(c.isspace() for c in host):
        return f"{host!r} contains white space"
    if "://" in host or "/" in host:
        return f"expected a host name or address, not a URL, got {host!r}"
    bare = host
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")):
            return f"{host!r} has an unbalanced bracket"
        bare = host[1:-1]
        try:
            ipaddress.IPv6Address(bare)
        except ValueError:
            return f"{host!r}: only an IPv6 address goes in brackets"
        return ""
    if ":" in bare:
        try:
            ipaddress.IPv6Address(bare)
            return ""
        except ValueError:
            name, _, port = bare.rpartition(":")
            if port.isdigit() and name and ":" not in name:
                return f"{host!r} carries a port; put {port} in f5.port and {name} here"
            return f"{host!r} is not an IPv6 address"
    if re.fullmatch(r"[0-9.]+", bare):
        try:
            ipaddress.IPv4Address(bare)
            return ""
        except ValueError:
            return f"{host!r} is not an IPv4 address"
    labels = bare.rstrip(".").split(".")
    bad = next((lab for lab in labels if not _LABEL.match(lab)), None)
    if bad is not None:
        return f"{host!r} is not a host name (label {bad[:70]!r}: letters, digits and '-', 1 to 63 characters)"
    return ""


def bare(host: str) -> str:
    """The address without IPv6 brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host
