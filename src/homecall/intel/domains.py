"""Registered domains (eTLD+1) from the Public Suffix List that the publicsuffixlist wheel ships."""

from __future__ import annotations

import functools
import ipaddress

import pyarrow as pa
from publicsuffixlist import PublicSuffixList

__all__ = ["ascii_name", "is_ip_literal", "registered_domain", "registered_domains"]


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # bundled list: no network access


def is_ip_literal(name: str) -> bool:
    """True for "10.0.0.1", "[::1]" or "::1": hosts written as addresses, not names."""
    if ":" not in name and not name[-1:].isdigit():
        return False  # an IPv4 address ends in a digit and an IPv6 one has colons
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def ascii_name(name: str) -> str:
    """An internationalized name in its DNS form: "www.пример.рф" -> "www.xn--e1afmkfd.xn--p1ai".

    DNS carries A-labels (punycode); logs that print Unicode (some proxies) would otherwise
    split one domain in two, and the DGA model would read Cyrillic letters as noise. Names
    that do not encode (empty labels, stray bytes) are returned unchanged.
    """
    if name.isascii():
        return name
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


@functools.lru_cache(maxsize=1 << 19)
def registered_domain(name: str | None) -> str | None:
    """ "www.example.co.uk" -> "example.co.uk"; None for IPs, bare suffixes and junk.

    Cached: every web and DNS detector asks for the same names in one analysis."""
    if not name:
        return None
    host = ascii_name(name.strip().rstrip(".").lower())
    if ":" in host and not host.startswith("["):
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host  # Host header with a port
    if not host or is_ip_literal(host) or "." not in host:
        return None
    result: str | None = _psl().privatesuffix(host)
    return result


def registered_domains(names: pa.Array) -> pa.Array:
    """`registered_domain` over an array of (mostly distinct) names."""
    return pa.array([registered_domain(n) for n in names.to_pylist()], pa.string())
