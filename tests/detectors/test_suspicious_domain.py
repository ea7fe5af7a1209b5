from __future__ import annotations

import math
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from homecall.config import Config
from homecall.detectors import suspicious_domain
from homecall.detectors.suspicious_domain import SuspiciousDomainConfig, suspicion_score
from homecall.errors import ConfigError
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

CFG = SuspiciousDomainConfig()
RESOLVER = "10.0.0.53"
_uid = count()


def _dns(ts: float, src: str, query: str, **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"D{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 40000,
        "id.resp_h": fields.pop("dst", RESOLVER),
        "id.resp_p": 53,
        "proto": "udp",
        "query": query,
        "qtype_name": "A",
        "rcode": 0,
        "rcode_name": "NOERROR",
        "RD": fields.pop("rd", True),
        "answers": ["203.0.113.9"],
        **fields,
    }


def _tls(ts: float, src: str, sni: str) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"T{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 50000,
        "id.resp_h": "203.0.113.9",
        "id.resp_p": 443,
        "version": "TLSv13",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "server_name": sni,
    }


def _run(tables: Tables, cfg: SuspiciousDomainConfig = CFG) -> list[Finding]:
    return list(suspicious_domain.run(tables, cfg))


def _w(activity: int) -> float:
    return math.log10(1 + activity) / math.log10(1 + CFG.activity_full)


@pytest.mark.parametrize(
    ("weight", "activity", "shared", "expected"),
    [
        (0.8, 0, 1.0, 0.6 * 0.8 * 0.4),  # no use at all: the floor
        (0.8, 200, 1.0, 0.6 * 0.8),  # full activity: max_score x weight
        (1.0, 3, 1.0, 0.6 * (0.4 + 0.6 * math.log10(4) / math.log10(201))),
        (0.4, 5000, 0.1, 0.6 * 0.4 * 0.1),  # activity clipped at 1, prevalence x0.1
        (1.5, 200, 1.0, 0.6),  # combined weights never pass max_score
    ],
)
def test_suspicion_score_hand_worked(
    weight: float, activity: int, shared: float, expected: float
) -> None:
    assert suspicion_score(weight, activity, shared, CFG) == pytest.approx(expected)


@pytest.fixture(scope="module")
def office_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """12 hosts: one calls a Kraken-style dynamic-DNS name, one an ngrok tunnel; all of them
    use bit.ly and www.example.com; the resolver resolves iteratively for everyone."""
    hosts = [f"10.0.0.{i}" for i in range(1, 13)]
    dns = [_dns(60.0 * i, "10.0.0.1", "x.ibbwnhgh.mooo.com") for i in range(60)]
    dns += [_dns(100.0 + i, "10.0.0.2", "k3j2.ngrok-free.app") for i in range(3)]
    for n, host in enumerate(hosts):
        dns += [_dns(500.0 + n + 0.1 * i, host, "bit.ly") for i in range(3)]
        dns += [_dns(900.0 + n + 0.1 * i, host, "www.example.com") for i in range(5)]
    # the resolver's own non-recursive queries to an authoritative server (RD false)
    dns += [
        _dns(2000.0 + i, RESOLVER, "a.duckdns.org", dst="198.51.100.53", rd=False)
        for i in range(100)
    ]
    tls = [_tls(60.0 * i + 1, "10.0.0.1", "x.ibbwnhgh.mooo.com") for i in range(30)]
    return store_of(tmp_path_factory.mktemp("office"), {"dns": dns, "ssl": tls})


@pytest.fixture(scope="module")
def office(office_store: Store) -> Tables:
    return open_store(office_store)


def test_dynamic_dns_and_tunnel_names_rank_first(office: Tables) -> None:
    found = _run(office)
    assert [(f.src, f.dst, f.evidence["category"]) for f in found] == [
        ("10.0.0.1", "ibbwnhgh.mooo.com", "dynamic-dns"),
        ("10.0.0.2", "k3j2.ngrok-free.app", "tunnel"),
    ]
    ddns, tunnel = found
    # 60 lookups + 30 TLS connections, one host: 0.6 x 0.8 x (0.4 + 0.6 w(90))
    assert ddns.score == pytest.approx(0.6 * 0.8 * (0.4 + 0.6 * _w(90)))
    assert ddns.evidence["lookups"] == 60
    assert ddns.evidence["connections"] == 30
    assert ddns.evidence["matched"] == "mooo.com"
    assert ddns.evidence["list_source"] == "maltrail dynamic_domain.txt"
    assert ddns.evidence["dst_hosts"] == 1
    assert ddns.evidence["fleet_hosts"] == 13  # 12 hosts and the resolver
    assert len(ddns.evidence["uids"]) == 20
    assert ddns.severity == "low"  # a category is a prior: never above medium
    assert tunnel.score == pytest.approx(0.6 * 1.0 * (0.4 + 0.6 * _w(3)))
    assert "10.0.0.2" in tunnel.summary
    assert "ngrok" in tunnel.summary


def test_shared_and_iterative_lookups_are_not_reported(office: Tables) -> None:
    everything = _run(office, SuspiciousDomainConfig(min_score=0.0))
    by_dst = {(f.src, f.dst): f for f in everything}
    # bit.ly: 12 of 13 hosts use it; the score is cut by 90 % and stays under min_score
    shortener = by_dst[("10.0.0.5", "bit.ly")]
    assert shortener.evidence["shared_destination_factor"] == pytest.approx(0.1)
    assert shortener.score < CFG.min_score
    assert all(f.src != RESOLVER for f in everything)  # RD=false: resolving for clients


def test_users_own_lists(tmp_path: Path) -> None:
    mine = tmp_path / "my-ddns.txt"
    mine.write_text("# our router vendor's DDNS\ndyn.corp-example.net\n", encoding="utf-8")
    tables = tables_of(
        tmp_path,
        {"dns": [_dns(10.0 * i, "10.0.0.3", "pc7.dyn.corp-example.net") for i in range(200)]},
    )
    assert _run(tables) == []
    found = _run(tables, SuspiciousDomainConfig(extra_ddns_file=str(mine)))
    assert [(f.dst, f.evidence["list_source"]) for f in found] == [
        ("pc7.dyn.corp-example.net", "user list")
    ]
    with pytest.raises(ConfigError) as missing:
        _run(tables, SuspiciousDomainConfig(extra_risky_tlds_file=str(tmp_path / "nope.txt")))
    assert missing.value.key == "detectors.suspicious-domain.extra_risky_tlds_file"


@pytest.fixture(scope="module")
def wrccdc(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    store = Store(tmp_path_factory.mktemp("wrccdc") / "store")
    import_paths([samples / "zeek-tsv/wrccdc2018-zed-sample"], store)
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)


def test_wrccdc_has_no_suspicious_domain_worth_reporting(wrccdc: Tables) -> None:
    # 191 hosts, 21 minutes, no labels (PROVENANCE.txt). Its names on our lists are a few
    # shortener, GitHub Pages / App Engine / Azure and .xyz/.info lookups: none reaches
    # min_score, and there is no dynamic-DNS or tunnel name in it.
    assert _run(wrccdc) == []
    everything = _run(wrccdc, SuspiciousDomainConfig(min_score=0.0))
    assert everything
    assert {f.evidence["category"] for f in everything} <= {
        "url-shortener",
        "free-hosting",
        "risky-tld",
    }
    assert max(f.score for f in everything) < CFG.min_score
    dns = wrccdc["dns"]
    for f in everything[:5]:  # the lookups counted are the host's DNS rows for the domain
        rows = dns.filter((dns.orig_ip == f.src) & dns.query.lower().endswith(f.dst or ""))
        assert f.evidence["lookups"] == wrccdc.to_pyarrow(rows.select("uid")).num_rows


def test_contract(office_store: Store) -> None:
    assert_contract(lambda tables: suspicious_domain.run(tables, CFG), office_store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(office_store: Store, request: pytest.FixtureRequest) -> None:
    session = request.getfixturevalue("spark")  # skips without pyspark or Java
    assert_spark_agrees(lambda tables: suspicious_domain.run(tables, CFG), office_store, session)
