from __future__ import annotations

import logging
import math
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from homecall.config import Config
from homecall.detectors import dns_bypass
from homecall.detectors.dns_bypass import DnsBypassConfig, bypass_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, connect, open_tables
from tests.detectors.zeek_logs import (
    assert_contract,
    assert_spark_agrees,
    open_store,
    store_of,
    tables_of,
)

CFG = DnsBypassConfig()
RESOLVER = "10.0.0.53"
_uid = count()


def _dns(ts: float, src: str, dst: str, query: str, *, rd: bool = True) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"D{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 40000,
        "id.resp_h": dst,
        "id.resp_p": 53,
        "proto": "udp",
        "query": query,
        "qtype_name": "A",
        "rcode": 0,
        "RD": rd,
        "answers": ["93.184.215.14"],
    }


def _conn(ts: float, src: str, dst: str, port: int) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"C{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": "tcp",
        "orig_bytes": 200,
        "resp_bytes": 400,
        "conn_state": "SF",
        "orig_pkts": 4,
        "resp_pkts": 4,
    }


def _run(tables: Tables, cfg: DnsBypassConfig = CFG) -> list[Finding]:
    return list(dns_bypass.run(tables, cfg))


def _w(n: int) -> float:
    return math.log10(1 + n) / math.log10(1 + CFG.exchanges_full)


@pytest.mark.parametrize(
    ("kind", "exchanges", "share", "expected"),
    [
        ("dns", 1, 0.0, 0.7 * (0.5 + 0.5 * _w(1))),
        ("dns", 1000, 0.0, 0.7),  # the only host going outside, a lot: max_score
        ("dot", 1000, 1.0, 0.7 * 0.3),  # every DNS client does it: 30 % left
        ("doh", 1000, 0.0, 0.7 * 0.8),  # browsers' built-in DoH weighs less
    ],
)
def test_bypass_score_hand_worked(kind: str, exchanges: int, share: float, expected: float) -> None:
    assert bypass_score(kind, exchanges, share, CFG) == pytest.approx(expected)


@pytest.fixture(scope="module")
def office_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Ten hosts use the office resolver; 10.0.0.1 also asks 8.8.8.8, 10.0.0.2 uses DoH, 10.0.0.3
    DoT; the resolver forwards to 1.1.1.1 and 10.0.0.4 resolves iteratively itself."""
    hosts = [f"10.0.0.{i}" for i in range(1, 11)]
    dns = [_dns(1.0 + n, h, RESOLVER, "www.example.com") for n, h in enumerate(hosts)]
    dns += [_dns(100.0 + i, RESOLVER, "1.1.1.1", "www.example.com") for i in range(40)]
    dns += [_dns(200.0 + i, "10.0.0.1", "8.8.8.8", f"q{i}.example.net") for i in range(50)]
    dns += [_dns(300.0 + i, "10.0.0.4", "198.41.0.4", "example.org", rd=False) for i in range(9)]
    conn = [_conn(400.0 + i, "10.0.0.3", "9.9.9.9", 853) for i in range(20)]
    tls = [
        {
            "ts": 500.0 + i,
            "uid": f"T{next(_uid)}",
            "id.orig_h": "10.0.0.2",
            "id.orig_p": 51000,
            "id.resp_h": "104.16.249.249",
            "id.resp_p": 443,
            "cipher": "TLS_AES_128_GCM_SHA256",
            "server_name": "mozilla.cloudflare-dns.com",
        }
        for i in range(30)
    ]
    return store_of(tmp_path_factory.mktemp("office"), {"dns": dns, "conn": conn, "ssl": tls})


@pytest.fixture(scope="module")
def office(office_store: Store) -> Tables:
    return open_store(office_store)


def test_hosts_going_past_the_office_resolver(office: Tables) -> None:
    found = _run(office)
    assert [(f.src, f.dst, f.dst_port, f.evidence["kind"]) for f in found] == [
        ("10.0.0.1", "8.8.8.8", 53, "dns"),
        ("10.0.0.3", "9.9.9.9", 853, "dot"),
        ("10.0.0.2", "mozilla.cloudflare-dns.com", 443, "doh"),
    ]
    plain, dot, doh = found
    context = 1 - 0.7 * (3 - 1) / (10 - 1)  # 3 of the 10 DNS clients (resolver excluded) go out
    assert plain.score == pytest.approx(0.7 * (0.5 + 0.5 * _w(50)) * context)
    assert dot.score == pytest.approx(0.7 * (0.5 + 0.5 * _w(20)) * context)
    assert doh.score == pytest.approx(0.7 * 0.8 * (0.5 + 0.5 * _w(30)) * context)
    assert plain.evidence["internal_resolvers"] == [RESOLVER]
    assert plain.evidence["resolvers_from"] == "inferred"
    assert plain.evidence["provider"] == "Google Public DNS"
    assert doh.evidence["provider"] == "Cloudflare 1.1.1.1 (Firefox)"
    assert (plain.evidence["bypassing_hosts"], plain.evidence["dns_clients"]) == (3, 10)
    assert len(plain.evidence["uids"]) == 20
    # the resolver forwarding to 1.1.1.1 and 10.0.0.4's iterative queries are not bypasses
    assert {f.src for f in _run(office, DnsBypassConfig(min_score=0.0))} == {
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    }


def test_a_lone_host_scores_higher_than_a_fleet(tmp_path: Path) -> None:
    lone = [_dns(float(i), "10.0.0.1", "8.8.8.8", "a.example") for i in range(100)]
    fleet = [
        _dns(float(i), f"10.0.0.{h}", "8.8.8.8", "a.example")
        for h in range(1, 11)
        for i in range(100)
    ]
    cfg = DnsBypassConfig(resolvers=(RESOLVER,), min_score=0.0)
    alone = _run(tables_of(tmp_path / "lone", {"dns": lone}), cfg)
    everyone = _run(tables_of(tmp_path / "fleet", {"dns": fleet}), cfg)
    assert len(alone) == 1
    assert len(everyone) == 10
    assert alone[0].score == pytest.approx(0.7 * (0.5 + 0.5 * _w(100)))
    assert everyone[0].score == pytest.approx(alone[0].score * 0.3)
    assert everyone[0].evidence["fleet_share_factor"] == pytest.approx(0.3)


def test_nobody_is_flagged_without_an_internal_resolver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = [
        _dns(float(i), f"10.0.0.{h}", "8.8.8.8", "a.example") for h in range(1, 5) for i in range(9)
    ]
    with caplog.at_level(logging.INFO, logger="homecall.detectors.dns_bypass"):
        assert _run(tables_of(tmp_path, {"dns": home})) == []
    assert "nobody flagged" in caplog.text


def test_a_configured_resolver_outside_the_internal_networks(tmp_path: Path) -> None:
    # a campus whose resolvers have public addresses (slips-test9: 147.32.82.19 and .80.9)
    dns = [_dns(float(i), "10.0.0.1", "147.32.82.19", "a.example") for i in range(50)]
    dns += [_dns(100.0 + i, "10.0.0.2", "8.8.8.8", "b.example") for i in range(50)]
    found = _run(tables_of(tmp_path, {"dns": dns}), DnsBypassConfig(resolvers=("147.32.82.19",)))
    assert [(f.src, f.dst) for f in found] == [("10.0.0.2", "8.8.8.8")]


def _sample(samples: Path, folder: str, tmp_path: Path) -> Tables:
    store = Store(tmp_path / "store")
    import_paths([samples / folder], store)
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)


NJRAT = "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious"


def test_njrat_sandbox_resolver(samples: Path, tmp_path: Path) -> None:
    # 001 (conn.log only): the IPv6 router fd2d:ab8c:225::1 answers one internal host's DNS
    # (331 flows); the infected 192.168.1.115 sends its DNS to 8.8.8.8 (8 flows labelled
    # "Benign Google": the sandbox's configured resolver). One client is too few to call the
    # router the network's resolver by default; at min_resolver_clients = 1 it is.
    tables = _sample(samples, NJRAT, tmp_path)
    assert _run(tables) == []
    found = _run(tables, DnsBypassConfig(min_resolver_clients=1))
    assert [(f.src, f.dst, f.dst_port, f.evidence["exchanges"]) for f in found] == [
        ("192.168.1.115", "8.8.8.8", 53, 8)
    ]
    assert found[0].evidence["internal_resolvers"] == ["fd2d:ab8c:225::1"]
    labels = (samples / NJRAT / "labeled-conn.log").read_text(encoding="utf-8").splitlines()
    flows = [line.split("\t") for line in labels if not line.startswith("#")]
    to_google = [f for f in flows if f[4] == "8.8.8.8" and f[5] == "53"]
    assert len(to_google) == 8
    assert {f[21] for f in to_google} == {"Benign"}


def test_dnscat2_host_asks_the_tunnel_server_directly(samples: Path, tmp_path: Path) -> None:
    # PROVENANCE.txt: 192.168.88.2 sends dnscat2 TXT queries straight to 165.227.88.15 (24 of 34
    # rows). The lab's resolver 172.16.200.11 answers no one in this subset, so it is named in
    # the config; the other outside queries (10.55.200.10/11, and 192.168.88.2 once) are
    # non-recursive (RD false): iterative resolution, not a bypass.
    tables = _sample(samples, "zeek-json/rita-dnscat2-subset", tmp_path)
    assert _run(tables) == []
    found = _run(tables, DnsBypassConfig(resolvers=("172.16.200.11",)))
    assert [(f.src, f.dst, f.evidence["exchanges"]) for f in found] == [
        ("192.168.88.2", "165.227.88.15", 24)
    ]
    assert found[0].evidence["provider"] is None  # not a public resolver


def test_wrccdc_resolvers_recurse_and_nobody_bypasses(samples: Path, tmp_path: Path) -> None:
    tables = _sample(samples, "zeek-tsv/wrccdc2018-zed-sample", tmp_path)
    assert _run(tables) == []
    # every DNS query to an outside server in the capture is non-recursive (RD false) and comes
    # from an internal host that itself answers DNS for other internal hosts
    dns = tables.oriented("dns")
    outside = tables.to_pyarrow(
        dns.filter((dns.direction == "outbound") & (dns.dst_port == 53)).select("src", "rd")
    )
    assert outside.num_rows == 2631  # counted with a plain query over dns.log, 8 servers
    assert set(outside.column("rd").to_pylist()) == {False}
    served = dns.filter(dns.direction == "internal").select(ip=dns.dst).distinct()
    servers = set(tables.to_pyarrow(served).column("ip").to_pylist())
    assert set(outside.column("src").to_pylist()) <= servers


def test_contract(office_store: Store) -> None:
    assert_contract(lambda tables: dns_bypass.run(tables, CFG), office_store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(office_store: Store, request: pytest.FixtureRequest) -> None:
    session = request.getfixturevalue("spark")  # skips without pyspark or Java
    assert_spark_agrees(lambda tables: dns_bypass.run(tables, CFG), office_store, session)
