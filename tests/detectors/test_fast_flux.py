from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from homecall.detectors import fast_flux
from homecall.detectors.fast_flux import AddressSpread, FastFluxConfig, address_spread, flux_score
from homecall.findings import Finding
from homecall.store.tables import Tables
from tests.detectors.zeek_dns import T0, Lookup, tables_of, write_log

CFG = FastFluxConfig()
CDN_MARKS = ("akamai", "edgekey", "cloudfront", "fastly", "googleapis", "gvt1", "akadns", "azure")


def _hunt(tables: Tables, cfg: FastFluxConfig = CFG) -> list[Finding]:
    return list(fast_flux.DETECTOR.run(tables, cfg))


def test_address_spread_hand_worked() -> None:
    spread = address_spread(
        [
            "81.2.3.4",
            "81.2.3.9",  # same /24
            "81.2.7.1",  # same /16, another /24
            "81.9.1.1",  # same /8, another /16
            "93.184.216.34",  # another /8
            "10.0.0.1",  # private: not counted
            "0.0.0.0",  # not routable: not counted
            "2a01:4f8:121:212c::2",
            "2a01:4f8:121:212c::3",  # same /48
            "2a01:4f9::1",  # same IPv6 /16, another /32
            "e1234.a.akamaiedge.net",  # a CNAME target, not an address
        ]
    )
    assert spread == AddressSpread(addresses=8, networks=6, networks_16=5, blocks=3)


@pytest.mark.parametrize(
    ("spread", "ttl", "rotation", "expected"),
    [
        # 60 addresses in 60 networks over 40 /8 blocks, answers replaced 12 times, TTL 60 s
        (AddressSpread(60, 60, 60, 40), 60.0, 12.0, 0.85),
        # the same spread with a 1,050 s median TTL: (1 - (1050 - 300) / 1500) = 0.5
        (AddressSpread(60, 60, 60, 40), 1050.0, 12.0, 0.425),
        # a CDN: 24 addresses in 2 networks of 2 blocks: not many networks, not scattered
        (AddressSpread(24, 2, 2, 2), 30.0, 3.0, 0.0),
        # a fixed round robin (every answer holds every address): nothing changes
        (AddressSpread(16, 15, 10, 8), 60.0, 1.0, 0.0),
        # halfway on every axis: networks 22.5 of 5..40, blocks 7.5 of 3..12, rotation 2.75
        (AddressSpread(30, 22, 20, 7), 100.0, 2.75, 0.85 * (4 / 9) * math.sqrt(17 / 35 * 0.5)),
        # too few addresses to judge
        (AddressSpread(9, 9, 9, 9), 60.0, 9.0, 0.0),
        # no TTLs in the log (dnsmasq): half weight
        (AddressSpread(60, 60, 60, 40), None, 12.0, 0.425),
    ],
)
def test_flux_score(
    spread: AddressSpread, ttl: float | None, rotation: float, expected: float
) -> None:
    assert flux_score(spread, ttl, rotation, CFG) == pytest.approx(expected, abs=1e-4)


# First octets of public unicast /8s held by many different networks (RIPE, ARIN, APNIC, LACNIC).
PUBLIC_8: tuple[int, ...] = (24, 31, 37, 41, 46, 62, 71, 77, 78, 79, 81, 82, 83, 84, 85, 86, 87)
PUBLIC_8 += (88, 89, 90, 91, 92, 93, 94, 95, 98, 109, 112, 118, 121, 176, 178, 186, 187, 188)
PUBLIC_8 += (189, 190, 201, 212)


def _addresses(rng: random.Random, first_octets: tuple[int, ...], n: int) -> list[str]:
    out = []
    for _ in range(n):
        octets = (rng.choice(first_octets), rng.randrange(256), rng.randrange(256))
        out.append(".".join(map(str, (*octets, rng.randrange(1, 255)))))
    return out


def _lookups(rng: random.Random) -> list[Lookup]:
    """Two hours of a 12-host office: a flux C2 name (5 of 80 scattered addresses per answer,
    TTL 120 s) looked up by 10.3.0.5 every 5 minutes; a CDN name behind a CNAME; a cloud load
    balancer behind a CNAME; an NTP pool; a fixed round robin of 12 addresses."""
    out: list[Lookup] = []
    hosts = [f"10.3.0.{i}" for i in range(5, 17)]
    flux = _addresses(rng, PUBLIC_8, 80)
    cdn = [
        f"23.{rng.choice((45, 46))}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(20)
    ]
    aws = _addresses(rng, (3, 18, 34, 52, 54), 40)  # one cloud region's blocks
    ntp = _addresses(rng, PUBLIC_8, 60)
    fixed = _addresses(rng, PUBLIC_8, 12)
    for step in range(24):
        ts = T0 + 300 * step
        out.append(
            Lookup(
                ts, hosts[0], "update.flux-c2.net", answers=rng.sample(flux, 5), ttls=[120.0] * 5
            )
        )
        for i, host in enumerate(hosts):
            ips = rng.sample(cdn, 2)
            cname = "e1234.a.akamaiedge.net"
            out.append(
                Lookup(
                    ts + i, host, "www.shop-example.com", answers=[cname, *ips], ttls=[300, 20, 20]
                )
            )
            ips = rng.sample(ntp, 4)
            out.append(Lookup(ts + i + 0.5, host, "0.pool.ntp.org", answers=ips, ttls=[150.0] * 4))
        ips = rng.sample(aws, 8)
        cname = "lb-123.eu-west-1.elb.amazonaws.com"
        out.append(
            Lookup(
                ts + 20, hosts[1], "api.saas-example.com", answers=[cname, *ips], ttls=[60.0] * 9
            )
        )
        out.append(
            Lookup(ts + 30, hosts[2], "downloads.example.org", answers=fixed, ttls=[60.0] * 12)
        )
    return out


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("flux")
    return tables_of([write_log(root / "logs" / "dns.log", _lookups(random.Random(7)))], root)


def test_flux_name_ranks_first(office: Tables) -> None:
    findings = _hunt(office, FastFluxConfig(min_score=0.0))
    top = findings[0]
    assert (top.src, top.dst) == ("10.3.0.5", "update.flux-c2.net")
    assert top.severity == "high"  # max_score 0.85: addresses alone are never "critical"
    assert top.evidence["addresses"] > 50
    assert top.evidence["most_in_one_answer"] == 5
    assert top.evidence["ttl_median_s"] == 120.0
    assert top.evidence["query_hosts"] == 1
    assert len(top.evidence["uids"]) == 20
    by_name = {f.dst: f for f in findings}
    assert by_name["0.pool.ntp.org"].evidence["known_service"] == "NTP pool"
    assert by_name["0.pool.ntp.org"].severity == "info"
    assert by_name["api.saas-example.com"].score < 0.25  # 5 blocks of one cloud, via a CNAME
    assert by_name.get("www.shop-example.com") is None or by_name["www.shop-example.com"].score == 0
    assert (
        by_name.get("downloads.example.org") is None or by_name["downloads.example.org"].score == 0
    )


def test_repeated_runs_give_equal_findings(office: Tables) -> None:
    assert [f.to_dict() for f in _hunt(office)] == [f.to_dict() for f in _hunt(office)]


@pytest.fixture(scope="module")
def wrccdc(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("wrccdc")
    return tables_of([samples / "zeek-tsv/wrccdc2018-zed-sample"], root)


def test_known_cdns_in_wrccdc_stay_below_low(wrccdc: Tables) -> None:
    """WRCCDC's CDN names with many addresses: d2fashanjl7d9f.cloudfront.net (24 addresses in
    2 /24s), Google front ends (id.l.google.com: 23 in 4 /16s), ajax.googleapis.com (19, via a
    CNAME into google.com): many addresses, but within a few blocks and, for most, one answer
    set that does not change. None reaches "low"."""
    findings = _hunt(wrccdc, FastFluxConfig(min_score=0.0))  # every name with 10+ addresses
    cdns = [f for f in findings if any(m in (f.dst or "") for m in CDN_MARKS)]
    assert len(cdns) >= 3
    assert all(f.score < 0.25 for f in cdns), [(f.dst, f.score) for f in cdns]


def test_ntp_pools_look_like_flux_but_are_known(wrccdc: Tables) -> None:
    """pool.ntp.org answers with 4 of thousands of volunteers' servers, TTL 150 s: structurally
    fast flux (2.debian.pool.ntp.org: 40 addresses in 40 networks over 28 /8 blocks), and
    lowered to "info" as the known NTP pool."""
    pools = [f for f in _hunt(wrccdc) if (f.dst or "").endswith("pool.ntp.org")]
    assert pools
    assert max(f.evidence["score_before_context"] for f in pools) >= 0.75
    assert all(f.severity == "info" for f in pools)
    assert all(f.evidence["known_service"] == "NTP pool" for f in pools)


def test_benign_samples_reach_no_medium_flux(samples: Path, tmp_path: Path) -> None:
    """No sample without a flux label gets a "medium" flux finding. The highest before context
    on WRCCDC besides the NTP pools is www.trueos.org (12 addresses of a small anycast CDN in
    9 blocks, reached through a CNAME into anycastcdn.net), below "low"."""
    for i, sample in enumerate(
        (
            "zeek-tsv/wrccdc2018-zed-sample",
            "zeek-json/slips-test9-mixed",
            "dns-server-dnsmasq",
            "zeek-tsv/rita-proxy-beacon",
            "suricata-eve/idps-comparison-test7-hide-and-seek",
        )
    ):
        findings = _hunt(tables_of([samples / sample], tmp_path / str(i)))
        assert all(f.score < 0.5 for f in findings), (sample, findings[:1])
