from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pytest

from homecall.simulator.addresses import host_ips, int_to_ip, ip_to_int, is_internal, is_public
from homecall.simulator.catalogue import INTERNAL_NAMES, build_catalogue
from homecall.simulator.internet import HOSTING, PROVIDERS, popular_domains


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("142.250.1.1", True),
        ("10.1.2.3", False),  # RFC 1918
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # RFC 6598 shared address space
        ("127.0.0.1", False),
        ("224.0.0.251", False),  # multicast
        ("169.254.1.1", False),
        ("192.0.2.1", False),  # documentation
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ip_to_int(address)) is public


def test_host_addresses_are_stable_and_internal() -> None:
    ips = [int_to_ip(int(ip)) for ip in host_ips(401)]
    assert ips[:2] == ["10.1.1.20", "10.1.1.21"]
    assert ips[199:201] == ["10.1.1.219", "10.1.2.20"]
    assert ips[400] == "10.1.3.20"
    assert len(set(ips)) == len(ips)
    assert is_internal(host_ips(401)).all()
    with pytest.raises(ValueError, match="hosts"):
        host_ips(0)


def test_provider_blocks_are_public() -> None:
    for provider in [*PROVIDERS.values(), HOSTING]:
        for block in provider.blocks:
            network = ipaddress.ip_network(block)
            assert network.is_global, block
            assert not network.is_multicast, block


def test_popular_domains_are_whole_names() -> None:
    for _, _, name in popular_domains():  # a name wrapped across lines in the listing breaks
        labels = name.split(".")
        assert len(labels) >= 2, name
        assert all(label and label[0] != "-" and label[-1] != "-" for label in labels), name


def test_catalogue_addresses() -> None:
    cat = build_catalogue(np.random.default_rng(0), rare_domains=2_000)
    popular = [name for _, _, name in popular_domains()]
    assert len(popular) >= 300
    assert len(set(popular)) == len(popular)
    assert len(cat.names) == len(popular) + len(INTERNAL_NAMES) + 2_000
    assert set(popular) <= set(cat.names)
    assert (cat.ip_count >= 1).all()
    assert (cat.ip_count <= 4).all()
    assert cat.ip_count[cat.ids["pool.ntp.org"]] == 4
    owners = Counter(int(ip) for ip in cat.ips)
    internal_ips = set(INTERNAL_NAMES.values())
    for name, ident in cat.ids.items():
        start, count = cat.ip_start[ident], cat.ip_count[ident]
        for ip in cat.ips[start : start + count]:
            if name in INTERNAL_NAMES:
                assert int(ip) in internal_ips
            else:
                assert is_public(int(ip)), (name, int_to_ip(int(ip)))
            if ident not in cat.rare:  # only long-tail sites share a shared-hosting address
                assert owners[int(ip)] == 1, name
    shared = [ip for ip, n in owners.items() if n > 1]
    assert shared  # several small sites on one shared-hosting server


def test_catalogue_groups_and_determinism() -> None:
    first = build_catalogue(np.random.default_rng(5), rare_domains=300)
    again = build_catalogue(np.random.default_rng(5), rare_domains=300)
    other = build_catalogue(np.random.default_rng(6), rare_domains=300)
    assert first.names == again.names
    assert np.array_equal(first.ips, again.ips)
    assert not np.array_equal(first.ips, other.ips)
    assert first.rare.size == 300
    groups = [first.sites, first.third_party, first.rare, first.background, first.plain_http]
    assert sum(g.size for g in groups) == len(np.unique(np.concatenate(groups)))
    assert first.is_http[first.plain_http].all()
    assert not first.is_http[first.sites].any()
    a_answers = first.a_answers.to_pylist()
    www = first.ids["www.ebay.com"]
    assert a_answers[www].startswith("www.ebay.com.edgekey.net,e")  # Akamai CNAME chain
