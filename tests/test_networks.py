from __future__ import annotations

import pyarrow as pa
import pytest

from homecall.networks import InternalNetworks

NETS = InternalNetworks.from_cidrs(["203.0.113.0/25"])


@pytest.mark.parametrize(
    ("ip", "internal"),
    [
        ("10.0.0.1", True),
        ("172.16.0.1", True),
        ("172.32.0.1", False),  # just past 172.16.0.0/12
        ("192.168.255.255", True),
        ("100.64.0.1", True),  # RFC 6598
        ("100.128.0.1", False),
        ("203.0.113.127", True),  # configured
        ("203.0.113.128", False),
        ("fd2d:ab8c:225::1", True),  # ULA
        ("fe80::1", False),
        ("8.8.8.8", False),
        ("999.1.1.1", False),
        ("not-an-ip", False),
    ],
)
def test_contains_and_classify_agree(ip: str, internal: bool) -> None:
    assert NETS.contains(ip) is internal
    assert NETS.classify(pa.array([ip, None])).to_pylist() == [internal, False]
