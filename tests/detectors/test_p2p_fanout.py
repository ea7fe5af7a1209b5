from __future__ import annotations

import math
import random
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from homecall.detectors import p2p_fanout
from homecall.detectors.p2p_fanout import (
    Baseline,
    P2pFanoutConfig,
    baseline,
    fanout_strength,
    log_ramp,
    p2p_score,
    scan_score,
)
from homecall.findings import Finding
from homecall.networks import InternalNetworks
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables, connect, open_tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store, store_of

CFG = P2pFanoutConfig()
START = 1_709_625_600.0  # 2024-03-05 08:00 UTC
BOT, HSCAN, VSCAN, RESOLVER, BROWSER, MONITOR = (
    "10.0.0.66",
    "10.0.0.50",
    "10.0.0.51",
    "10.0.0.53",
    "10.0.0.60",
    "10.0.0.70",
)
WORKSTATIONS = [f"10.0.0.{i}" for i in range(1, 16)]
_uid = count()


def _conn(ts: float, src: str, dst: str, port: int, **fields: Any) -> dict[str, Any]:
    state = fields.pop("conn_state", "SF")
    return {
        "ts": ts,
        "uid": f"C{next(_uid)}",
        "id.orig_h": src,
        "id.orig_p": fields.pop("sport", 50000),
        "id.resp_h": dst,
        "id.resp_p": port,
        "proto": fields.pop("proto", "tcp"),
        "duration": 1.0,
        "orig_bytes": 300,
        "resp_bytes": 0 if state == "S0" else 900,
        "conn_state": state,
        "orig_pkts": 2,
        "resp_pkts": 0 if state == "S0" else 2,
        **fields,
    }


def _scattered(k: int) -> str:
    """The k-th of many public addresses, each in a /16 of its own (a swarm's peers)."""
    return f"{20 + k // 256}.{k % 256}.{(k * 7) % 256}.9"


def _logs() -> list[dict[str, Any]]:
    """Fifteen workstations browsing 20-48 sites each over an hour and resolving through
    10.0.0.53, which itself asks 1,000 outside name servers. Around them: a P2P bot (1,500 UDP
    flows in 50 min to random addresses on high ports, most unanswered), a host probing
    tcp/445 on 120 internal addresses while browsing 200 sites, one probing 300 ports of
    10.0.0.2, a proxy-like browser
    reaching 400 web servers, and a monitoring server polling 500 devices over SNMP."""
    rng = random.Random(11)
    rows = []
    for n, host in enumerate(WORKSTATIONS):
        for k in range(20 + 2 * n):
            rows.append(_conn(START + 90 * k + n, host, f"93.184.{n}.{k}", 443))
            rows.append(_conn(START + 90 * k + n, host, RESOLVER, 53, proto="udp"))
    for k in range(2000):
        rows.append(_conn(START + k, RESOLVER, f"198.41.{k % 250}.{k % 4}", 53, proto="udp"))
    for k in range(1500):
        state = "S0" if k % 5 else "SF"
        rows.append(
            _conn(START + 2 * k, BOT, _scattered(k), rng.randint(1025, 65535), proto="udp",
                  conn_state=state, sport=rng.randint(1025, 65535))
        )  # fmt: skip
    for k in range(120):
        rows.append(_conn(START + 2 * k, HSCAN, f"10.0.{1 + k // 60}.{k % 60 + 1}", 445,
                          conn_state="S0" if k % 4 else "REJ"))  # fmt: skip
    for k in range(200):  # the scanner also browses: more answered web peers than scanned
        rows.append(_conn(START + 15 * k, HSCAN, f"151.101.{k}.1", 443))
    for port in range(1, 301):
        rows.append(
            _conn(START + port / 10, VSCAN, "10.0.0.2", port, conn_state="REJ", sport=41234)
        )
    for k in range(400):
        rows.append(_conn(START + 9 * k, BROWSER, f"104.{k % 250}.{k // 250}.7", 443))
    for k in range(500):
        device = f"10.1.{k // 250}.{k % 250 + 1}"
        rows.append(_conn(START + 5 * k, MONITOR, device, 161, proto="udp"))
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return store_of(tmp_path_factory.mktemp("fanout"), {"conn": _logs()})


@pytest.fixture(scope="module")
def found(store: Store) -> list[Finding]:
    return list(p2p_fanout.run(open_store(store), CFG))


def test_absolute_strength_hand_worked() -> None:
    small = Baseline(3, None)
    counts = {"peers": 269, "peak_peers": 116, "peak_flows": 116}
    strength, z = fanout_strength(counts, small, CFG)
    by_peers = (math.log1p(269) - math.log1p(50)) / (math.log1p(500) - math.log1p(50))
    by_minute = (math.log1p(116) - math.log1p(20)) / (math.log1p(200) - math.log1p(20))
    assert strength == pytest.approx(max(by_peers, by_minute))
    assert z == {}
    flows_only = fanout_strength({"peers": 1, "peak_peers": 1, "peak_flows": 3000}, small, CFG)
    assert flows_only[0] == pytest.approx(CFG.flows_weight)  # many flows to one peer weigh less


def test_fleet_baseline_hand_worked() -> None:
    peers = np.array([10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 1000])
    base = baseline({m: peers for m, *_ in p2p_fanout.METRICS}, CFG)
    median = math.log1p(20)
    mad = float(np.median(np.abs(np.log1p(peers) - median)))
    assert base.centres is not None
    assert base.centres["peers"] == pytest.approx((median, max(1.4826 * mad, 0.5)))
    strength, z = fanout_strength({m: 1000 for m, *_ in p2p_fanout.METRICS}, base, CFG)
    expected_z = (math.log1p(1000) - median) / max(1.4826 * mad, 0.5)
    assert z["peers"] == pytest.approx(expected_z)
    assert strength == pytest.approx(min(1.0, (expected_z - 3.5) / 4.5))
    assert baseline({"peers": peers[:9]}, CFG).centres is None  # 9 hosts: absolute thresholds


@pytest.mark.parametrize(
    ("strength", "traits", "expected"),
    [(0.0, 0.0, 0.18), (1.0, 1.0, 0.9), (0.5, 0.8, 0.9 * (0.2 + 0.175 + 0.36))],
)
def test_p2p_score_hand_worked(strength: float, traits: float, expected: float) -> None:
    assert p2p_score(strength, traits, CFG) == pytest.approx(expected)


def test_scan_score_hand_worked() -> None:
    assert scan_score(20, 20, 256.0, 1.0, CFG) == pytest.approx(0.7 * 0.6)
    assert scan_score(256, 20, 256.0, 1.0, CFG) == pytest.approx(0.7)
    hosts = log_ramp(120, 20, 256.0)
    assert scan_score(120, 20, 256.0, 0.5, CFG) == pytest.approx(0.7 * (0.3 + 0.4 * hosts + 0.15))


def test_each_kind_is_told_apart(found: list[Finding]) -> None:
    kinds = {(f.src, f.evidence["kind"]): f for f in found}
    assert set(kinds) == {
        (BOT, "p2p"),
        (HSCAN, "horizontal-scan"),
        (VSCAN, "vertical-scan"),
    }
    bot = kinds[(BOT, "p2p")]
    assert found[0] is bot
    assert bot.evidence["baseline"] == "fleet"
    assert bot.evidence["outside_peers"] == 1500
    assert bot.evidence["udp_ratio"] == 1.0
    assert bot.evidence["failed_ratio"] == 0.8
    assert bot.score >= 0.75
    hscan = kinds[(HSCAN, "horizontal-scan")]
    assert (hscan.dst, hscan.dst_port) == (None, 445)
    assert hscan.evidence["scan_hosts"] == 120
    assert hscan.score == pytest.approx(scan_score(120, 20, 256.0, 1.0, CFG))
    vscan = kinds[(VSCAN, "vertical-scan")]
    assert (vscan.dst, vscan.dst_port) == ("10.0.0.2", None)
    assert vscan.evidence["scan_ports"] == 300
    assert vscan.score <= CFG.scan_max_score
    assert all(len(f.evidence["uids"]) == 20 for f in found)


def test_resolvers_browsers_and_monitoring_are_damped(store: Store) -> None:
    every = list(p2p_fanout.run(open_store(store), P2pFanoutConfig(min_score=0.0)))
    by_src = {f.src: f for f in every}
    resolver = by_src[RESOLVER]
    assert "of its flows are DNS or NTP" in resolver.evidence["context"]
    assert "it serves internal clients" in resolver.evidence["context"]
    assert resolver.score < CFG.min_score
    browser = by_src[BROWSER]
    assert "answered web servers" in browser.evidence["context"]
    assert browser.score < CFG.min_score
    monitor = by_src[MONITOR]  # every device answers its polls: no scan, lowered fan-out
    assert monitor.evidence["kind"] == "fan-out"
    assert "100% of its flows were answered" in monitor.evidence["context"]
    assert monitor.score < CFG.min_score
    listed = P2pFanoutConfig(known_servers=(HSCAN,))
    damped = {f.src: f for f in p2p_fanout.run(open_store(store), listed)}
    assert HSCAN not in damped  # a listed scanner keeps 30 %: under min_score


def test_contract(store: Store) -> None:
    assert_contract(lambda t: p2p_fanout.run(t, CFG), store)


def _sample(samples: Path, path: str, tmp_path: Path, *extra: str) -> Tables:
    store = Store(tmp_path / "store")
    import_paths([samples / path], store)
    return open_tables(store, InternalNetworks.from_cidrs(extra), connect())


HIDE_AND_SEEK = (
    "suricata-eve/idps-comparison-test7-hide-and-seek",
    "pcap/slips-test7-hide-and-seek",
)


@pytest.mark.parametrize("path", HIDE_AND_SEEK)
def test_hide_and_seek_is_a_p2p_bot_that_scans_telnet(
    samples: Path, tmp_path: Path, path: str
) -> None:
    # PROVENANCE: a Hide'N Seek IoT P2P botnet capture; Suricata's flows and the PCAP itself.
    # The bot 192.168.2.16 talks UDP to peers at random addresses and ports (its swarm) and
    # tries telnet (23, 2323) and 8080 on random addresses to spread.
    found = list(p2p_fanout.run(_sample(samples, path, tmp_path), CFG))
    assert [(f.src, f.evidence["kind"]) for f in found] == [
        ("192.168.2.16", "p2p"),
        ("192.168.2.16", "horizontal-scan"),
    ]
    p2p, scan = found
    assert p2p.evidence["baseline"] == "absolute"  # two hosts: no fleet to compare with
    assert p2p.evidence["outside_peers"] == 266
    assert p2p.evidence["failed_ratio"] > 0.9
    assert p2p.evidence["networks_16"] > 250  # random addresses: nearly a /16 each
    assert p2p.score >= 0.7
    assert scan.dst_port == 23
    assert scan.evidence["scan_hosts"] == 54
    assert scan.evidence["wide_ports"] == 3  # 23, 8080 and 2323 each on 20+ hosts


def test_nfdump_flood_of_refused_connections(samples: Path, tmp_path: Path) -> None:
    # PROVENANCE: "a TCP port scan 147.32.80.119 -> 147.32.82.62 (SYN / RST-ACK pairs)"; the
    # records show 2,305 SYNs from as many source ports to port 902 only, each refused, in 33 s.
    # Both addresses are the CTU campus's public ones: internal only when configured.
    nfcapd = "netflow-nfdump/slips-test1/test1-malicious.nfcapd"
    tables = _sample(samples, nfcapd, tmp_path, "147.32.0.0/16")
    found = list(p2p_fanout.run(tables, CFG))
    assert [(f.src, f.dst, f.dst_port, f.evidence["kind"]) for f in found] == [
        ("147.32.80.119", "147.32.82.62", 902, "fan-out")
    ]
    assert found[0].evidence["flows"] == 2305
    assert found[0].evidence["failed_ratio"] == 1.0
    assert "absolute thresholds (small fleet)" in found[0].summary
    assert list(p2p_fanout.run(_sample(samples, nfcapd, tmp_path / "default"), CFG)) == []


def test_benign_samples(samples: Path, tmp_path: Path) -> None:
    # slips test 6: 192.168.1.132 answers 192.168.1.129's SSDP searches from port 1900 to 432
    # ephemeral ports (Suricata logs each answer as a flow): replies, not a vertical scan.
    # slips test 2 (Argus): a phone's VPN client, DNS, Facebook, Telegram: nothing.
    for n, path in enumerate(("suricata-eve/slips-test6", "netflow-argus/slips-test2")):
        assert list(p2p_fanout.run(_sample(samples, path, tmp_path / str(n)), CFG)) == [], path


@pytest.mark.spark
def test_duckdb_and_spark_agree(store: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: p2p_fanout.run(t, CFG), store, spark)
