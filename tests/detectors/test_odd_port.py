from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homecall.config import build_section
from homecall.detectors import odd_port, web
from homecall.detectors.odd_port import OddPortConfig, odd_port_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_tsv import at, conn, connect, request, store_of, tls

CFG = OddPortConfig()
T0 = at("2024-03-05 09:00:00")  # a Tuesday
PROXY = "10.0.0.1"


def _run(tables: Tables, cfg: OddPortConfig = CFG) -> list[Finding]:
    return list(odd_port.DETECTOR.run(tables, cfg))


def _sample(samples: Path, tmp_path: Path, name: str) -> Tables:
    store = Store(tmp_path / "store")
    import_paths([samples / name], store)
    return open_store(store)


def _connects(src: str, target: str, n: int, start: float = T0, **fields: Any) -> list[dict]:
    return [connect(start + 60.0 * i, src, PROXY, target, **fields) for i in range(n)]


def _by_src(found: list[Finding]) -> dict[str, Finding]:
    assert len({f.src for f in found}) == len(found)
    return {f.src: f for f in found}


# ---------------------------------------------------------------------------- the score


@pytest.mark.parametrize("requests", [1, 2, 10, 100, 1000])
def test_score_stays_under_max_score_and_grows_with_requests(requests: int) -> None:
    def score(n: int, **kw: Any) -> float:
        args = {"ports": 1, "proxied": True, "ip_literal": False, "allowed_ratio": 1.0}
        return odd_port_score(n, **{**args, **kw}, factor=1.0, cfg=CFG)

    assert 0.0 < score(requests) <= CFG.max_score
    assert score(requests + 1) >= score(requests)
    best = score(requests, ports=3, ip_literal=True)
    assert score(requests) < best <= CFG.max_score  # never "critical" (>= 0.9)
    assert score(requests, proxied=False) == pytest.approx(CFG.direct_weight * score(requests))
    refused = score(requests, allowed_ratio=0.0)
    assert refused == pytest.approx(CFG.refused_factor * score(requests))


# ---------------------------------------------------------------------------- real captures


def test_proxy_beacon_on_443_is_not_an_odd_port(samples: Path, tmp_path: Path) -> None:
    tables = _sample(samples, tmp_path, "zeek-tsv/rita-proxy-beacon")
    requests = tables.to_pyarrow(web.requests(tables)).to_pylist()
    # PROVENANCE.txt: 10.136.0.18 beacons through Squid 10.136.0.16:3128 with CONNECT ...:443
    tunnelled = [r for r in requests if r["via_proxy"] and r["src"] == "10.136.0.18"]
    assert tunnelled
    assert {r["port"] for r in tunnelled} == {443}
    assert _run(tables) == []


@pytest.mark.parametrize(
    "sample", ["zeek-json/wrccdc2018-zed-sample", "zeek-json/slips-test9-mixed"]
)
def test_benign_heavy_captures_give_nothing_above_low(
    samples: Path, tmp_path: Path, sample: str
) -> None:
    assert all(f.score < 0.5 for f in _run(_sample(samples, tmp_path, sample)))


def test_squid_sample_proxy_trojan_port_is_reported_as_refused_attempts(
    samples: Path, tmp_path: Path
) -> None:
    # PROVENANCE.txt: 10.105.37.65 -> natrocket.kmip.net:5288 "/iesocks?" and "/return?",
    # TCP_DENIED/407 (a dynamic-DNS host on a SOCKS-like path); its CONNECTs go to 443
    tables = _sample(samples, tmp_path, "web-proxy/elastic-integrations-squid")
    (finding,) = _run(tables)
    assert (finding.src, finding.dst, finding.dst_port) == (
        "10.105.37.65",
        "natrocket.kmip.net",
        5288,
    )
    assert finding.evidence["refused_requests"] == finding.evidence["requests"] == 2
    assert finding.severity == "low"


# ---------------------------------------------------------------------------- hand-built logs


def test_connect_to_4444_is_flagged_and_8443_is_not(tmp_path: Path) -> None:
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "c2.example.net:4444", 30),
                *_connects("10.0.0.6", "portal.example.com:8443", 30),
            ]
        },
    )
    found = _run(open_store(store))
    assert [(f.src, f.dst, f.dst_port) for f in found] == [("10.0.0.5", "c2.example.net", 4444)]
    (finding,) = found
    assert finding.evidence["kind"] == "proxy"
    assert finding.evidence["requests"] == 30
    assert finding.evidence["refused_requests"] == 0
    assert finding.severity in {"low", "medium"}  # one reason, repeated: not high on its own
    assert "c2.example.net:4444" in finding.summary
    assert len(finding.evidence["uids"]) == 20


def test_the_sites_own_web_ports_are_configurable(tmp_path: Path) -> None:
    store = store_of(tmp_path, {"http": _connects("10.0.0.5", "app.example.com:9443", 10)})
    assert _run(open_store(store))
    assert _run(open_store(store), OddPortConfig(extra_web_ports=(9443,))) == []


def test_refused_attempts_are_reported_lower_than_allowed_ones(tmp_path: Path) -> None:
    refused = {"status_code": 407, "status_msg": "Proxy Authentication Required"}
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "c2.example.net:5288", 10),
                *_connects("10.0.0.6", "c2.example.net:5288", 10, **refused),
            ]
        },
    )
    found = _by_src(_run(open_store(store)))
    assert found["10.0.0.6"].evidence["refused_requests"] == 10
    assert "refused" in found["10.0.0.6"].summary
    assert 0 < found["10.0.0.6"].score < found["10.0.0.5"].score


def test_proxy_auth_failure_to_a_ddns_port_like_the_squid_sample(tmp_path: Path) -> None:
    # web-proxy/elastic-integrations-squid: 10.105.37.65 GET http://natrocket.kmip.net:5288/
    # iesocks? and /return?, TCP_DENIED/407; here as a sensor in front of the proxy sees it
    rows = [
        request(
            T0 + i,
            "10.105.37.65",
            PROXY,
            "natrocket.kmip.net:5288",
            port=3128,
            uri=f"http://natrocket.kmip.net:5288/{path}?",
            status_code=407,
        )
        for i, path in enumerate(["iesocks", "return"])
    ]
    (finding,) = _run(open_store(store_of(tmp_path, {"http": rows})))
    assert (finding.src, finding.dst, finding.dst_port) == (
        "10.105.37.65",
        "natrocket.kmip.net",
        5288,
    )
    assert finding.evidence["allowed_ratio"] == 0.0
    assert finding.severity == "low"  # two refused attempts: reported, not alarming


def test_address_host_and_extra_ports_rank_above_a_named_single_port(tmp_path: Path) -> None:
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "c2.example.net:4444", 20),
                *_connects("10.0.0.6", "203.0.113.9:4444", 20),
                *_connects("10.0.0.7", "c2.example.org:4444", 10),
                *_connects("10.0.0.7", "c2.example.org:4445", 10),
            ]
        },
    )
    found = _by_src(_run(open_store(store)))
    assert found["10.0.0.6"].evidence["ip_literal"] is True
    assert found["10.0.0.7"].evidence["dst_ports"] == [4444, 4445]
    assert found["10.0.0.6"].score > found["10.0.0.5"].score
    assert found["10.0.0.7"].score > found["10.0.0.5"].score


def test_direct_http_and_tls_on_odd_ports_are_weaker_than_proxied(tmp_path: Path) -> None:
    server = "198.51.100.7"
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "c2.example.net:4444", 20),
                *[
                    request(T0 + i, "10.0.0.6", server, "c2.example.net", port=4444)
                    for i in range(20)
                ],
                *[
                    request(T0 + i, "10.0.0.8", server, "c2.example.net", port=8080)
                    for i in range(20)
                ],
            ],
            "ssl": [
                tls(T0 + i, "10.0.0.7", server, "c2.example.net", port=4444) for i in range(20)
            ],
            "conn": [conn(T0 + i, "10.0.0.9", server, 993) for i in range(20)],
        },
    )
    found = _by_src(_run(open_store(store)))
    assert set(found) == {"10.0.0.5", "10.0.0.6", "10.0.0.7"}
    assert found["10.0.0.6"].evidence["kind"] == found["10.0.0.7"].evidence["kind"] == "direct"
    assert found["10.0.0.6"].score < found["10.0.0.5"].score
    assert found["10.0.0.7"].score == pytest.approx(found["10.0.0.6"].score)


def test_direct_tls_on_mail_ports_is_not_web_traffic(tmp_path: Path) -> None:
    sessions = [
        tls(T0 + i, "10.0.0.7", "198.51.100.7", "imap.example.com", port=993) for i in range(50)
    ]
    assert _run(open_store(store_of(tmp_path, {"ssl": sessions}))) == []


def test_known_service_port_through_the_proxy_is_damped(tmp_path: Path) -> None:
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "1-courier.push.apple.com:5223", 20),
                *_connects("10.0.0.6", "c2.example.net:5224", 20),
            ]
        },
    )
    found = _by_src(_run(open_store(store)))
    push = found.get("10.0.0.5")
    assert push is None or push.score < found["10.0.0.6"].score
    if push is not None:
        assert push.evidence["known_service"] == "Apple Push Notification service"


def test_a_port_much_of_the_fleet_uses_is_damped(tmp_path: Path) -> None:
    fleet = [f"10.0.1.{i}" for i in range(1, 13)]
    rows = [row for src in fleet for row in _connects(src, "erp.example.com:9000", 20)]
    rows += _connects("10.0.0.5", "c2.example.net:9001", 20)
    found = _run(open_store(store_of(tmp_path, {"http": rows})))
    by_port = {f.dst_port: f for f in found}
    assert by_port[9001].score == max(f.score for f in found)
    damped = [f for f in found if f.dst_port == 9000]
    assert all("shared_destination_factor" in f.evidence for f in damped)
    assert all(f.score < by_port[9001].score / 2 for f in damped)


def test_contract_and_empty_window(tmp_path: Path) -> None:
    store = store_of(tmp_path, {"http": _connects("10.0.0.5", "c2.example.net:4444", 30)})
    assert_contract(lambda t: _run(t), store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    store = store_of(
        tmp_path,
        {
            "http": [
                *_connects("10.0.0.5", "c2.example.net:4444", 30),
                *_connects("10.0.0.6", "203.0.113.9:5288", 5, status_code=403),
            ],
            "ssl": [tls(T0 + i, "10.0.0.7", "198.51.100.7", None, port=8000) for i in range(9)],
        },
    )
    assert_spark_agrees(lambda t: _run(t), store, spark)


def test_settings_come_from_homecall_toml() -> None:
    cfg = build_section(
        OddPortConfig, {"extra_web_ports": [8000, 9443]}, where="detectors.odd-port", path=None
    )
    assert cfg.extra_web_ports == (8000, 9443)
