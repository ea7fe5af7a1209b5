"""Registered domains and the DNS form of internationalized names."""

from __future__ import annotations

import pytest

from homecall.intel.domains import ascii_name, registered_domain


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.пример.рф", "www.xn--e1afmkfd.xn--p1ai"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("example.com", "example.com"),
        ("a..ü.com", "a..ü.com"),  # an empty label does not encode: left as it is
    ],
)
def test_ascii_name(name: str, expected: str) -> None:
    assert ascii_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.co.uk", "example.co.uk"),
        ("Shop.Bücher.DE.", "xn--bcher-kva.de"),
        ("www.xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a.b.bar.duckdns.org", "bar.duckdns.org"),  # private suffixes on: dynamic DNS splits
        ("example.com:8080", "example.com"),
        ("10.0.0.1", None),
        ("localhost", None),
        ("", None),
        (None, None),
    ],
)
def test_registered_domain(name: str | None, expected: str | None) -> None:
    assert registered_domain(name) == expected
