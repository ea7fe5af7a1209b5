from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from homecall.detectors import dns_tunnel
from homecall.detectors.dns_tunnel import DnsTunnelConfig, NameStats, name_stats, tunnel_score
from homecall.findings import Finding
from homecall.store.tables import Tables
from tests.detectors.zeek_dns import T0, Lookup, tables_of, write_log

CFG = DnsTunnelConfig()
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def _cost(char: str) -> float:
    """Bits of one character under ordinary names: 0.9 x its frequency + 0.1 / 38."""
    return -math.log2(0.9 * dns_tunnel.HOST_FREQUENCIES[char] + 0.1 / 38)


def _hunt(tables: Tables, cfg: DnsTunnelConfig = CFG) -> list[Finding]:
    return list(dns_tunnel.DETECTOR.run(tables, cfg))


@pytest.mark.parametrize(
    ("subdomains", "encoding", "entropy", "randomness", "payload", "length_mean"),
    [
        # payload "e" + "ee": entropy 0; "e" fits hex, so the alternative costs log2 16 = 4 bits
        (["e", "ee"], "hex", 0.0, _cost("e") - 4, 3, 1.5),
        # "dnsc" is in both names, so it is structure: payload "abc" + "www" (w: base32, 5 bits);
        # entropy of a, b, c once and w three times = 3 x (1/6 x log2 6) + 1/2 x 1
        (
            ["www.dnsc", "abc.dnsc"],
            "base32",
            0.5 * math.log2(6) + 0.5,
            (sum(map(_cost, "abcwww")) / 6) - 5,
            6,
            7.0,
        ),
        # every hex digit once: entropy 4 bits, and hex costs 4 bits a character
        (["0123456789abcdef"], "hex", 4.0, sum(map(_cost, "0123456789abcdef")) / 16 - 4, 16, 16),
    ],
)
def test_name_stats_hand_worked(
    subdomains: list[str],
    encoding: str,
    entropy: float,
    randomness: float,
    payload: int,
    length_mean: float,
) -> None:
    stats = name_stats(subdomains)
    assert stats.encoding == encoding
    assert stats.entropy_bits == pytest.approx(entropy)
    assert stats.randomness_bits == pytest.approx(randomness)
    assert stats.payload_chars == payload
    assert stats.length_mean == pytest.approx(length_mean)


def _stats(length: float, randomness: float, names: int = 100) -> NameStats:
    payload = int(length * names)
    return NameStats(
        names, payload, length, int(length), int(length), payload, 4.0, randomness, "x"
    )


@pytest.mark.parametrize(
    ("stats", "unusual", "expected"),
    [
        # 100 names of 40 random hex characters (4,000 bytes), all TXT: randomness and length
        # full, volume log10(4001) / 4 = 0.9005, so 1 x (0.5 + 0.5 x 0.9005)
        (_stats(40, 2.8), 1.0, 0.5 + 0.5 * math.log10(4001) / 4),
        # the same as A lookups: the type weight (0.15) is missing
        (_stats(40, 2.8), 0.0, 0.85 * (0.5 + 0.5 * math.log10(4001) / 4)),
        # long but ordinary names (randomness below 0 bits/char): nothing
        (_stats(40, -0.6), 1.0, 0.0),
        # random but short names (8 characters): nothing
        (_stats(8, 2.8), 1.0, 0.0),
        # 16 characters, randomness 0.5 x 1600 / 1664: sqrt(0.4808 x 0.5) x (0.5 + 0.5 w)
        (
            _stats(16, 0.5),
            0.0,
            math.sqrt(0.5 * 1600 / 1664 * 0.5) * 0.85 * (0.5 + 0.5 * math.log10(1601) / 4),
        ),
    ],
)
def test_tunnel_score_needs_long_random_names(
    stats: NameStats, unusual: float, expected: float
) -> None:
    assert tunnel_score(stats, unusual, CFG) == pytest.approx(expected, abs=1e-4)


def test_dnscat2_is_the_top_tunnel(samples: Path, tmp_path: Path) -> None:
    """PROVENANCE: 192.168.88.2 runs dnscat2 over TXT lookups of <hex>.dnsc.r-1x.com."""
    findings = _hunt(tables_of([samples / "zeek-json/rita-dnscat2-subset"], tmp_path))
    top = findings[0]
    assert (top.src, top.dst) == ("192.168.88.2", "r-1x.com")
    assert top.severity in {"high", "critical"}
    assert top.evidence["encoding"] == "hex"
    assert top.evidence["unusual_type_ratio"] == 1.0
    assert top.evidence["unique_names"] == 23  # 24 lookups, one retransmitted
    assert top.evidence["uids"]
    assert all(f.score < 0.25 for f in findings[1:])


@pytest.fixture(scope="module")
def wrccdc(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("wrccdc")
    return tables_of([samples / "zeek-tsv/wrccdc2018-zed-sample"], root)


def test_benign_samples_reach_no_medium_tunnel(samples: Path, tmp_path: Path) -> None:
    """No tunnel label on the samples without one: WRCCDC (191 hosts, 54k lookups), a Windows VM
    browsing, a captive-portal hotspot (dnsmasq), BIND fixtures and the proxy lab. Their names
    with the most distinct subdomains are PTR zones and .localdomain suffixes (not scored),
    google.com (short ordinary names, asked by 27 client hosts) and steamcontent.com (valve1400,
    ...: short numbered servers); none is long and random, so none reaches "medium"."""
    for i, sample in enumerate(
        (
            "zeek-tsv/wrccdc2018-zed-sample",
            "zeek-json/slips-test9-mixed",
            "dns-server-dnsmasq",
            "dns-server-bind",
            "zeek-tsv/rita-proxy-beacon",
        )
    ):
        findings = _hunt(tables_of([samples / sample], tmp_path / str(i)))
        assert all(f.score < 0.5 for f in findings), (sample, findings[:1])


def test_microsoft_probes_look_like_a_tunnel_but_are_known(wrccdc: Tables) -> None:
    """<32 hex>.clo.footprintdns.com names are Windows network measurement probes: as long and
    random as a tunnel's, from 3 of 191 hosts; KNOWN_LOOKUPS lowers them to "info"."""
    findings = _hunt(wrccdc, DnsTunnelConfig(min_score=0.0, min_names=3))
    probes = [f for f in findings if f.dst == "footprintdns.com"]
    assert probes
    for f in probes:
        assert f.evidence["encoding"] == "hex"
        assert f.evidence["score_before_context"] > 0.5
        assert f.evidence["known_lookup"] == "Microsoft network measurement probe"
        assert f.severity == "info"


def _base32(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(BASE32) for _ in range(n))


def _office(rng: random.Random) -> list[Lookup]:
    """14 hosts through the resolver 10.0.0.53: ordinary names, antivirus hash lookups, a CDN,
    and one host (10.1.0.66) running an iodine-like tunnel (NULL lookups of base32 names) that
    the resolver forwards to 8.8.8.8 (both legs logged, as a sensor in front of the resolver)."""
    hosts = [f"10.1.0.{i}" for i in range(10, 24)]
    out: list[Lookup] = []
    for i, host in enumerate(hosts):
        for j, name in enumerate(("www", "mail", "login", "static", "api")):
            out.append(Lookup(T0 + 60 * i + j, host, f"{name}.example-shop.com"))
        for j in range(30):  # Sophos asks about file hashes by name
            digest = "".join(rng.choice("0123456789abcdef") for _ in range(40))
            out.append(Lookup(T0 + 100 * j + i, host, f"{digest}.sxl.sophosxl.net", "TXT"))
    for j in range(60):
        out.append(Lookup(T0 + 5 * j, hosts[0], f"img{j}.cdn-shop-assets.com"))
    tunnel = "t.evil-tunnel.net"
    for j in range(400):
        name = f"{_base32(rng, 50)}.{_base32(rng, 20)}.{tunnel}"
        out.append(Lookup(T0 + 2 * j, "10.1.0.66", name, "NULL"))
        out.append(Lookup(T0 + 2 * j + 0.01, "10.0.0.53", name, "NULL", resolver="8.8.8.8"))
    return out


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("office")
    log = write_log(root / "logs" / "dns.log", _office(random.Random(4)))
    return tables_of([log], root)


def test_iodine_like_tunnel_ranks_first_and_the_resolver_is_not_blamed(office: Tables) -> None:
    findings = _hunt(office, DnsTunnelConfig(min_score=0.0))
    top = findings[0]
    assert (top.src, top.dst) == ("10.1.0.66", "evil-tunnel.net")
    assert top.severity in {"high", "critical"}
    assert top.evidence["encoding"] == "base32"
    assert top.evidence["unusual_type_ratio"] == 1.0
    assert top.evidence["unique_names"] == 400
    assert all(f.src != "10.0.0.53" for f in findings)


def test_antivirus_hash_lookups_stay_info(office: Tables) -> None:
    findings = [f for f in _hunt(office, DnsTunnelConfig(min_score=0.0)) if f.dst == "sophosxl.net"]
    assert len(findings) == 14
    for f in findings:
        assert f.evidence["known_lookup"] == "Sophos Live Protection lookup"
        assert f.evidence["shared_domain_factor"] < 0.2  # all 14 hosts of 15 ask it
        assert f.severity == "info"


def test_ordinary_cdn_names_are_not_reported(office: Tables) -> None:
    assert all(f.dst != "cdn-shop-assets.com" for f in _hunt(office))


def test_repeated_runs_give_equal_findings(office: Tables) -> None:
    first = [f.to_dict() for f in _hunt(office)]
    assert first == [f.to_dict() for f in _hunt(office)]
