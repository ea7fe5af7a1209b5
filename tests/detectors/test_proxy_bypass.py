from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import pytest

from homecall.detectors import proxy_bypass
from homecall.detectors.common import scaled_log
from homecall.detectors.proxy_bypass import ProxyBypassConfig, bypass_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_tsv import at, conn, connect, write_log

CFG = ProxyBypassConfig()
PROXY = "10.0.1.30"
IMPLANT, QUIC, CHROME, STALE, DIRECT = "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9"
C2 = "185.100.87.202"
ASA = "firewall-cisco-asa/apache-metron"
START = at("2024-03-05 08:00:00")
_port = count(40000)


def _iptables(ts: float, src: str, dst: str, dport: int, **fields: object) -> str:
    """A netfilter LOG line as UFW writes it (RFC 3339 syslog stamp, so no year guessing)."""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    proto = str(fields.get("proto", "TCP"))
    ports = f"SPT={fields.get('sport', next(_port))} DPT={dport}"
    tail = f" WINDOW=64240 RES=0x00 {fields.get('flags', 'SYN')} URGP=0" if proto == "TCP" else ""
    return (
        f"{stamp} gw kernel: [5002.088484] {fields.get('prefix', '[UFW BLOCK]')} IN=eth1 "
        f"OUT=eth0 SRC={src} DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO={proto} "
        f"{ports}{tail}"
    )


def _store(
    folder: Path, zeek: dict[str, list[dict[str, object]]], firewall: Iterable[str]
) -> Store:
    logs = folder / "logs"
    for name, rows in zeek.items():
        write_log(logs, name, rows)
    (logs / "fw.log").write_text("\n".join(firewall) + "\n", encoding="utf-8")
    store = Store(folder / "store")
    import_paths([logs], store)
    return store


def _retries(ts: float, src: str, dst: str, dport: int) -> list[str]:
    """One blocked connect(): the SYN and its two retransmissions from one source port."""
    sport = next(_port)
    return [_iptables(ts + d, src, dst, dport, sport=sport) for d in (0.0, 1.0, 3.0)]


def _office() -> tuple[dict[str, list[dict[str, object]]], list[str]]:
    """Twelve workstations browse through the Squid proxy 10.0.1.30:3128 (CONNECTs), which
    itself reaches eight web servers. 10.0.0.5 also calls 185.100.87.202:443 directly every
    300 s for 8 h, denied by the gateway (each call a SYN and two retransmissions). Look-alikes:
    10.0.0.6's QUIC (udp/443) to Google, dropped until Chrome falls back to the proxy; 10.0.0.7
    blocked once each towards 25 addresses; 10.0.0.8's late ACK/FIN packets of a session the
    firewall forgot; an outside scanner hitting 10.0.0.2; and 10.0.0.9, a proxy client whose
    direct HTTPS to 104.16.1.1 the firewall let through."""
    hosts = [f"10.0.0.{i}" for i in range(1, 13)]
    http, conns = [], []
    for n, host in enumerate(hosts):
        for k in range(6):
            row = connect(START + 600 * k + n, host, PROXY, f"site{k}.example.com:443")
            http.append(row)
            conns.append(conn(row["ts"], host, PROXY, 3128, uid=row["uid"]))
    conns += [conn(START + 30 * k, PROXY, f"93.184.216.{k}", 443) for k in range(8)]
    conns += [conn(START + 3600 + 60 * k, DIRECT, "104.16.1.1", 443) for k in range(20)]
    firewall = [line for k in range(96) for line in _retries(START + 300 * k, IMPLANT, C2, 443)]
    firewall += [
        _iptables(START + 7 * k + k * k, QUIC, f"142.250.1.{k % 5}", 443, proto="UDP")
        for k in range(12)
    ]
    firewall += [_iptables(START + 50 * k, CHROME, f"203.0.113.{k}", 443) for k in range(25)]
    firewall += [
        _iptables(START + 10 * k, STALE, "93.184.215.14", 443, flags="ACK FIN") for k in range(30)
    ]
    firewall += [_iptables(START + k, "45.33.32.156", "10.0.0.2", 20 + k) for k in range(40)]
    return {"conn": conns, "http": http}, firewall


@pytest.fixture(scope="module")
def office_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    zeek, firewall = _office()
    return _store(tmp_path_factory.mktemp("office"), zeek, firewall)


@pytest.fixture(scope="module")
def office(office_store: Store) -> list[Finding]:
    return list(proxy_bypass.run(open_store(office_store), CFG))


def _w(n: int) -> float:
    return scaled_log(n, CFG.attempts_full)


@pytest.mark.parametrize(
    ("attempts", "regularity", "span_s", "ceiling", "expected"),
    [
        (1, 0.0, 0.0, 0.85, 0.85 * (0.3 + 0.25 * _w(1))),  # one attempt: under min_score
        (100, 1.0, 3600.0, 0.85, 0.85),  # many, periodic, an hour or more: the ceiling
        (100, 0.0, 3600.0, 0.85, 0.85 * 0.75),  # the same without a timer
        (100, 1.0, 1800.0, 0.55, 0.55 * 0.9),  # no proxy known: the lower ceiling
    ],
)
def test_bypass_score_hand_worked(
    attempts: int, regularity: float, span_s: float, ceiling: float, expected: float
) -> None:
    assert bypass_score(attempts, regularity, span_s, ceiling, CFG) == pytest.approx(expected)
    assert bypass_score(1, 0.0, 0.0, 0.85, CFG) < CFG.min_score


@pytest.mark.parametrize(
    ("proto", "flags", "new"),
    [
        ("tcp", "SYN", True),  # iptables words
        ("tcp", "ACK SYN", False),  # a server's answer
        ("tcp", "ACK FIN", False),  # late packets of a forgotten session
        ("tcp", "S", True),  # pfSense letters
        ("tcp", "SA", False),
        ("tcp", "PA", False),
        ("tcp", "RST ACK", False),  # ASA "Deny TCP (no connection) ... flags RST ACK"
        ("tcp", None, True),  # flags not logged: every denial counts
        ("udp", None, True),
    ],
)
def test_new_attempts_by_tcp_flags(
    tmp_path: Path, proto: str, flags: str | None, new: bool
) -> None:
    import ibis

    t = ibis.memtable({"proto": [proto], "flags": [flags]}, schema={"proto": "str", "flags": "str"})
    expr = t.select(new=proxy_bypass.is_new_attempt(t.proto, t.flags))
    assert ibis.duckdb.connect().to_pyarrow(expr).column("new").to_pylist() == [new]


def test_the_implant_retrying_past_the_proxy_ranks_first(office: list[Finding]) -> None:
    top = office[0]
    assert (top.src, top.dst, top.dst_port) == (IMPLANT, C2, 443)
    assert top.evidence["kind"] == "denied"
    # 96 calls, each a SYN and two retransmissions from one source port: 96 attempts
    assert top.evidence["blocked_attempts"] == top.evidence["denied_attempts"] == 96
    assert top.evidence["period_s"] == pytest.approx(300.0, rel=0.02)
    assert top.evidence["retry_regularity"] > 0.9
    assert top.evidence["proxies"] == [f"{PROXY}:3128"]
    assert top.evidence["proxy_client"] is True
    assert top.score >= 0.75  # high: denied, periodic and persistent, in a proxied network
    assert f"{PROXY}:3128 (inferred from client requests, proxy traffic)" in top.summary
    assert "every ~300 s" in top.summary


def test_benign_look_alikes_stay_low_or_unreported(
    office_store: Store, office: list[Finding]
) -> None:
    assert {f.src for f in office} == {IMPLANT, DIRECT}
    every = list(proxy_bypass.run(open_store(office_store), ProxyBypassConfig(min_score=0.0)))
    by_src: dict[str, list[Finding]] = {}
    for f in every:
        by_src.setdefault(f.src, []).append(f)
    assert STALE not in by_src  # late ACK/FIN packets are no attempts
    assert "10.0.0.2" not in by_src  # an outside scanner hitting us is inbound
    assert "45.33.32.156" not in by_src
    assert PROXY not in by_src  # the proxy's own upstream is its job
    # QUIC is tried directly by design, then Chrome falls back to the proxy: lowered
    assert {f.evidence["fallback_port"] for f in by_src[QUIC]} == {"udp/443"}
    assert max(f.score for f in by_src[QUIC]) < CFG.min_score
    # one blocked try each towards 25 addresses: an application probing, lowered
    assert len(by_src[CHROME]) == 25
    assert all("blocked towards 25 addresses" in f.evidence["context"] for f in by_src[CHROME])
    assert max(f.score for f in by_src[CHROME]) < CFG.min_score
    (direct,) = by_src[DIRECT]
    assert direct.evidence["kind"] == "direct"
    assert direct.evidence["allowed_connections"] == 20
    assert direct.score == pytest.approx(
        CFG.allowed_weight
        * bypass_score(20, direct.evidence["retry_regularity"], 1140.0, 0.85, CFG),
        rel=1e-3,  # the regularity in the evidence is rounded
    )
    assert direct.score < office[0].score


def test_without_a_proxy_only_denials_count_lower(tmp_path: Path) -> None:
    conns = [conn(START + k, IMPLANT, "10.0.0.53", 53, proto="udp") for k in range(3)]
    conns += [conn(START + 60 * k, DIRECT, "104.16.1.1", 443) for k in range(20)]
    firewall = [line for k in range(96) for line in _retries(START + 300 * k, IMPLANT, C2, 443)]
    found = list(proxy_bypass.run(open_store(_store(tmp_path, {"conn": conns}, firewall)), CFG))
    assert [(f.src, f.dst) for f in found] == [(IMPLANT, C2)]  # direct web is not judged
    assert found[0].evidence["proxy_known"] is False
    assert found[0].score <= CFG.no_proxy_max_score
    assert "no web proxy is known" in found[0].summary


def test_configured_proxy_and_networks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conns = [
        conn(START + k, h, "10.0.0.53", 53, proto="udp")
        for k, h in enumerate(["10.0.0.5", "10.0.5.5"])
    ]
    firewall = [line for k in range(40) for line in _retries(START + 300 * k, "10.0.0.5", C2, 8443)]
    firewall += [
        line for k in range(40) for line in _retries(START + 300 * k, "10.0.5.5", C2, 8443)
    ]
    store = _store(tmp_path, {"conn": conns}, firewall)
    cfg = ProxyBypassConfig(proxies=("10.0.1.30:3128",), proxied_networks=("10.0.0.0/24",))
    found = list(proxy_bypass.run(open_store(store), cfg))
    assert [f.src for f in found] == ["10.0.0.5"]  # 10.0.5.0/24 need not use the proxy
    assert found[0].evidence["proxy_sources"] == ["config"]
    assert found[0].evidence["proxy_client"] is False
    with caplog.at_level(logging.INFO, logger="homecall.detectors.proxy_bypass"):
        list(proxy_bypass.run(open_store(store), CFG))
    assert "no web proxy" in caplog.text


def test_a_policy_many_hosts_hit_is_damped(tmp_path: Path) -> None:
    hosts = [f"10.0.0.{i}" for i in range(1, 13)]
    conns = [conn(START + n, h, "10.0.0.53", 53, proto="udp") for n, h in enumerate(hosts)]
    firewall = [
        line
        for h in hosts
        for k in range(40)
        for line in _retries(START + 900 * k + hosts.index(h), h, "52.1.1.1", 443)
    ]
    cfg = ProxyBypassConfig(proxies=(PROXY,))
    found = list(proxy_bypass.run(open_store(_store(tmp_path, {"conn": conns}, firewall)), cfg))
    assert found == [] or all(f.evidence["shared_destination_factor"] < 0.2 for f in found)
    alone = bypass_score(40, 1.0, 35100.0, CFG.max_score, CFG)
    assert all(f.score < 0.2 * alone for f in found)


def test_contract(office_store: Store) -> None:
    assert_contract(lambda t: proxy_bypass.run(t, CFG), office_store)


def test_samples_without_a_proxy_give_nothing(samples: Path, tmp_path: Path) -> None:
    # ASA (apache-metron): its only outbound denials are LLMNR to a multicast address, and no
    # proxy is known; rita-proxy-beacon: the client goes through Squid 10.136.0.16:3128
    # (inferred from its CONNECTs) and never directly.
    for folder in (ASA, "zeek-tsv/rita-proxy-beacon"):
        store = Store(tmp_path / folder.replace("/", "-"))
        import_paths([samples / folder], store)
        tables: Tables = open_store(store)
        assert list(proxy_bypass.run(tables, CFG)) == [], folder
    proxies, _ = proxy_bypass.find_proxies(tables, CFG)
    assert proxies.addresses == ("10.136.0.16",)
    assert proxies.sources == ("client requests",)


def test_asa_connections_count_once_against_a_configured_proxy(
    samples: Path, tmp_path: Path
) -> None:
    # With a proxy configured for 10.22.8.0/24, the ASA's own records of direct web
    # connections are direct findings: each connection once, though the ASA logs it built and
    # torn down and the reader also gives it a conn row. Expected counts come from the raw
    # log: distinct connection ids per (inside host, outside address) on 80/443.
    raw = (samples / ASA / "asa_raw.log").read_text(encoding="utf-8")
    record = re.compile(
        r"(?:Built \w+|Teardown) TCP connection (\d+) for \S+?:([\d.]+)/(\d+)\S* "
        r"(?:\([^)]*\)\S* )?to \S+?:([\d.]+)/(\d+)"
    )
    expected: dict[tuple[str, str], set[str]] = {}
    for conn_id, a, a_port, b, b_port in record.findall(raw):
        for inside, outside, port in ((a, b, b_port), (b, a, a_port)):
            if (
                inside.startswith("10.22.8.")
                and not outside.startswith("10.")
                and port
                in (
                    "80",
                    "443",
                )
            ):
                expected.setdefault((inside, outside), set()).add(conn_id)
    store = Store(tmp_path / "store")
    import_paths([samples / ASA], store)
    cfg = ProxyBypassConfig(
        proxies=("10.22.8.5:8080",), proxied_networks=("10.22.8.0/24",), min_score=0.0
    )
    tables = open_store(store)
    found = list(proxy_bypass.run(tables, cfg))
    assert found
    assert {f.evidence["kind"] for f in found} == {"direct"}
    got = {(f.src, f.dst): f.evidence["allowed_connections"] for f in found}
    # internal hosts are those the endpoint tables show: an ASA host seen only in "Built"
    # lines has no conn row (a teardown gives one) and is not judged (docs: limits)
    known = set(tables.to_pyarrow(tables.internal).column("ip").to_pylist())
    assert got == {pair: len(ids) for pair, ids in expected.items() if pair[0] in known}
    assert got[("10.22.8.127", "72.111.72.43")] == 4


@pytest.mark.spark
def test_duckdb_and_spark_agree(office_store: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: proxy_bypass.run(t, CFG), office_store, spark)
