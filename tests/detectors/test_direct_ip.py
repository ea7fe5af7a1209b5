from __future__ import annotations

import logging
import math
from itertools import count
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from homecall.config import Config
from homecall.detectors import direct_ip
from homecall.detectors.direct_ip import DirectIpConfig, direct_score, is_public
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

CFG = DirectIpConfig()
RESOLVER = "10.0.0.53"
_uid = count()


def _conn(ts: float, src: str, dst: str, port: int, **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": fields.pop("uid", f"C{next(_uid)}"),
        "id.orig_h": src,
        "id.orig_p": 50000 + next(_uid) % 10000,
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": fields.pop("proto", "tcp"),
        "duration": 1.0,
        "orig_bytes": fields.pop("orig_bytes", 300),
        "resp_bytes": fields.pop("resp_bytes", 700),
        "conn_state": "SF",
        "orig_pkts": 5,
        "resp_pkts": 5,
        **fields,
    }


def _dns(ts: float, src: str, query: str, answer: str) -> dict[str, Any]:
    return {
        "ts": ts,
        "uid": f"D{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": 40000,
        "id.resp_h": RESOLVER,
        "id.resp_p": 53,
        "proto": "udp",
        "query": query,
        "qtype_name": "A",
        "rcode": 0,
        "RD": True,
        "answers": [answer],
    }


def _w(value: float, full: float) -> float:
    return math.log10(1 + value) / math.log10(1 + full)


@pytest.mark.parametrize(
    ("ip", "public"),
    [
        ("41.108.179.197", True),
        ("2a00:1450:4001:82b::200e", True),
        ("10.1.2.3", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.1.1", False),
        ("224.0.0.251", False),
        ("ff02::fb", False),
        ("203.0.113.9", False),  # documentation range
        ("255.255.255.255", False),
        ("not-an-ip", False),
    ],
)
def test_is_public(ip: str, public: bool) -> None:
    assert is_public(ip) is public


@pytest.mark.parametrize(
    ("conns", "total_bytes", "span_s", "named", "shared", "expected"),
    [
        (1, 0, 0.0, False, 1.0, 0.7 * (0.25 + 0.35 * _w(1, 1000))),
        (1000, 10**8, 7200.0, False, 1.0, 0.7),  # everything full
        (1000, 10**8, 7200.0, True, 1.0, 0.35),  # a name was sent: halved
        (
            10,
            5000,
            1800.0,
            False,
            0.1,
            0.07 * (0.25 + 0.35 * _w(10, 1000) + 0.2 * _w(5000, 1e8) + 0.1),
        ),
    ],
)
def test_direct_score_hand_worked(
    conns: int, total_bytes: int, span_s: float, named: bool, shared: float, expected: float
) -> None:
    got = direct_score(conns, total_bytes, span_s, named=named, shared=shared, cfg=CFG)
    assert got == pytest.approx(expected)


@pytest.fixture(scope="module")
def office_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    hosts = [f"10.0.0.{i}" for i in range(1, 13)]
    dns = []
    for n, host in enumerate(hosts):
        if host != "10.0.0.5":  # 10.0.0.5 never asks DNS: its contacts cannot be judged
            dns += [_dns(10.0 + n, host, "www.example.com", "93.184.215.14")]
            dns += [_dns(9000.0 + n, host, "www.example.com", "93.184.215.14")]
    conn = [_conn(60.0 * i + 20, "10.0.0.1", "41.108.179.197", 4444) for i in range(100)]
    conn += [_conn(30.0 + i, "10.0.0.1", "93.184.215.14", 443) for i in range(20)]  # resolved
    conn += [_conn(40.0 + n, host, "52.94.236.248", 443) for n, host in enumerate(hosts)]
    conn += [_conn(50.0, "10.0.0.2", "8.8.8.8", 53, proto="udp")]  # DNS: dns-bypass' job
    conn += [_conn(51.0, "10.0.0.2", "224.0.0.251", 5353, proto="udp")]
    conn += [_conn(52.0, "10.0.0.2", "8.8.4.4", 0, proto="icmp")]
    http = []
    for i in range(30):  # HTTP to an address written in the Host header
        uid = f"H{i}"
        conn.append(_conn(100.0 + 200 * i, "10.0.0.3", "104.16.0.1", 80, uid=uid))
        http.append(
            {
                "ts": 100.0 + 200 * i,
                "uid": uid,
                "id.orig_h": "10.0.0.3",
                "id.orig_p": 51000 + i,
                "id.resp_h": "104.16.0.1",
                "id.resp_p": 80,
                "method": "GET",
                "host": "104.16.0.1",
                "uri": "/gate.php",
            }
        )
    tls = []
    for i in range(40):  # a name in the SNI but no lookup in the window
        uid = f"S{i}"
        conn.append(_conn(200.0 + 100 * i, "10.0.0.4", "151.101.1.1", 443, uid=uid))
        tls.append(
            {
                "ts": 200.0 + 100 * i,
                "uid": uid,
                "id.orig_h": "10.0.0.4",
                "id.orig_p": 52000 + i,
                "id.resp_h": "151.101.1.1",
                "id.resp_p": 443,
                "cipher": "TLS_AES_128_GCM_SHA256",
                "server_name": "cached.example.org",
            }
        )
    conn += [_conn(60.0 * i, "10.0.0.5", "185.53.179.7", 8080) for i in range(100)]
    conn += [_conn(20.0, "10.0.0.6", "1.1.1.1", 853)]  # 10.0.0.6 resolves over DoT
    conn += [_conn(60.0 * i, "10.0.0.6", "185.53.179.8", 8080) for i in range(100)]
    conn += [_conn(9500.0 + i, "10.0.0.7", "185.53.179.9", 8080) for i in range(100)]  # after DNS
    return store_of(
        tmp_path_factory.mktemp("office"), {"dns": dns, "conn": conn, "http": http, "ssl": tls}
    )


@pytest.fixture(scope="module")
def office(office_store: Store) -> Tables:
    return open_store(office_store)


def test_direct_contacts_of_hosts_with_visible_dns(
    office: Tables, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="homecall.detectors.direct_ip"):
        found = list(direct_ip.run(office, CFG))
    assert [(f.src, f.dst, f.dst_port) for f in found] == [
        ("10.0.0.1", "41.108.179.197", 4444),
        ("10.0.0.3", "104.16.0.1", 80),
        ("10.0.0.4", "151.101.1.1", 443),
    ]
    rat, literal, named = found
    # 100 connections of 1,000 bytes over 99 minutes: 0.7 x (0.25 + 0.35 w + 0.2 w + 0.2)
    expected = 0.7 * (0.25 + 0.35 * _w(100, 1000) + 0.2 * _w(100_000, 1e8) + 0.2)
    assert rat.score == pytest.approx(expected)
    assert rat.evidence["connections"] == 100
    assert rat.evidence["total_bytes"] == 100_000
    assert rat.evidence["dst_hosts"] == 1
    assert len(rat.evidence["uids"]) == 20
    assert literal.evidence["ip_literal_requests"] == 30
    assert "name_sent" not in literal.evidence
    assert named.evidence["name_sent"] == "cached.example.org"  # the score is halved
    assert "1 of 12 internal hosts with outbound connections made no DNS query" in caplog.text
    assert "resolve over DoT/DoH" in caplog.text


def test_addresses_many_hosts_reach_without_dns_are_infrastructure(office: Tables) -> None:
    everything = list(direct_ip.run(office, DirectIpConfig(min_score=0.0)))
    shared = [f for f in everything if f.dst == "52.94.236.248"]
    assert len(shared) == 10  # every host but 10.0.0.5 (no DNS) and 10.0.0.6 (DoT)
    assert all(f.evidence["shared_destination_factor"] == pytest.approx(0.1) for f in shared)
    assert all(f.score < CFG.min_score for f in shared)
    assert {f.src for f in everything}.isdisjoint({"10.0.0.5", "10.0.0.6"})  # no DNS; DoT
    assert {f.dst for f in everything}.isdisjoint(
        {
            "185.53.179.9",  # 10.0.0.7, after the last DNS record
            "93.184.215.14",  # answered
            "8.8.8.8",  # DNS port
            "224.0.0.251",  # multicast
            "8.8.4.4",  # ICMP
        }
    )


def _sample(samples: Path, folder: str, tmp_path: Path) -> Tables:
    store = Store(tmp_path / "store")
    import_paths([samples / folder], store)
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)


def test_njrat_capture_has_no_dns_to_judge_by(
    samples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 001: only conn.log (PROVENANCE.txt); the njRAT C2 41.108.179.197:1177 cannot be judged
    tables = _sample(
        samples, "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious", tmp_path
    )
    with caplog.at_level(logging.INFO, logger="homecall.detectors.direct_ip"):
        assert list(direct_ip.run(tables, CFG)) == []
    assert "no DNS records" in caplog.text


def test_simda_c2_was_resolved_through_dns(samples: Path, tmp_path: Path) -> None:
    # 005: Simda's HTTP C2 23.253.126.58 (PROVENANCE.txt) was an answer to its DGA lookups
    # (lyryfyd.com, qetyfuv.com, ...), so it is not a direct-IP contact.
    tables = _sample(
        samples, "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious", tmp_path
    )
    dns = tables.to_pyarrow(tables["dns"].select("ts", "answers"))
    answered = pc.list_flatten(dns.column("answers")).to_pylist()
    assert answered.count("23.253.126.58") > 100
    conn = tables.to_pyarrow(tables["conn"].select("ts", "orig_ip", "resp_ip"))
    c2 = [r for r in conn.to_pylist() if r["resp_ip"] == "23.253.126.58"]
    assert len(c2) == 77
    assert {r["orig_ip"] for r in c2} == {"192.168.1.116"}
    assert list(direct_ip.run(tables, DirectIpConfig(min_score=0.0))) == []
    # the infected host's one public address no answer gave, 146.148.34.125 (HTTP Host
    # gatyhub.com), comes after the last DNS record of these first 1,000 lines: not judged
    last_dns = max(dns.column("ts").to_pylist())
    late = [r for r in conn.to_pylist() if r["resp_ip"] == "146.148.34.125"]
    assert late
    assert all(r["ts"] > last_dns for r in late)


def test_android_rat_host_resolves_over_dot(
    samples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 003: the phone 10.8.0.61 sent one plain lookup and 46 connections to 8.8.8.8:853 (Android
    # Private DNS): its names are resolved out of sight, so its contacts are not judged
    # (the RAT's C2 147.32.83.234:1337 among them).
    tables = _sample(
        samples, "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious", tmp_path
    )
    with caplog.at_level(logging.INFO, logger="homecall.detectors.direct_ip"):
        assert list(direct_ip.run(tables, DirectIpConfig(min_score=0.0))) == []
    assert "1 internal hosts resolve over DoT/DoH" in caplog.text


def test_wrccdc_only_candidate_carries_a_name(samples: Path, tmp_path: Path) -> None:
    # TLS and DNS logs only (no conn.log): 10,727 of 10,791 outbound TLS records go to answered
    # addresses. What is left for hosts with visible DNS is 10.47.8.10 -> 198.199.95.203,
    # whose SNI names cortanaupdate.stream: damped below min_score.
    tables = _sample(samples, "zeek-tsv/wrccdc2018-zed-sample", tmp_path)
    assert list(direct_ip.run(tables, CFG)) == []
    everything = list(direct_ip.run(tables, DirectIpConfig(min_score=0.0)))
    assert [(f.src, f.dst, f.evidence["name_sent"]) for f in everything] == [
        ("10.47.8.10", "198.199.95.203", "cortanaupdate.stream")
    ]
    assert everything[0].evidence["total_bytes"] is None  # no conn.log: bytes unknown


def test_empty_window(tmp_path: Path) -> None:
    tables = tables_of(tmp_path, {"conn": [_conn(1.0, "10.0.0.1", "41.108.179.197", 1177)]})
    assert list(direct_ip.run(tables, CFG)) == []


def test_contract(office_store: Store) -> None:
    assert_contract(lambda tables: direct_ip.run(tables, CFG), office_store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(office_store: Store, request: pytest.FixtureRequest) -> None:
    session = request.getfixturevalue("spark")  # skips without pyspark or Java
    assert_spark_agrees(lambda tables: direct_ip.run(tables, CFG), office_store, session)
