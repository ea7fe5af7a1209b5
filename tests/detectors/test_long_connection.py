from __future__ import annotations

import json
from collections import defaultdict
from ipaddress import ip_address
from pathlib import Path

import pytest

from homecall.detectors import long_connection
from homecall.detectors.long_connection import LongConnectionConfig, duration_score
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store
from tests.detectors.zeek_tsv import at, conn, connect, store_of, tls, uid

CFG = LongConnectionConfig()
T0 = at("2024-03-05 09:00:00")
HOUR = 3600.0
DNSCAT2 = "zeek-json/rita-dnscat2-subset"


def _run(tables: Tables, cfg: LongConnectionConfig = CFG) -> list[Finding]:
    return list(long_connection.DETECTOR.run(tables, cfg))


def _by_src(found: list[Finding]) -> dict[str, Finding]:
    assert len({f.src for f in found}) == len(found)
    return {f.src: f for f in found}


# ---------------------------------------------------------------------------- the score


@pytest.mark.parametrize("hours", [1.0, 2.0, 6.0, 12.0, 24.0, 72.0])
def test_duration_score_grows_with_hours_and_never_reaches_critical(hours: float) -> None:
    single = duration_score(hours * HOUR, hours * HOUR, CFG)
    assert 0 < single <= CFG.max_score < 0.9
    assert duration_score(hours * HOUR * 1.5, hours * HOUR, CFG) >= single
    pieces = duration_score(hours * HOUR, 60.0, CFG)  # the same total in one-minute pieces
    assert CFG.short_factor * single < pieces < single
    assert duration_score(CFG.min_duration_s - 1, CFG.min_duration_s - 1, CFG) == 0.0


# ---------------------------------------------------------------------------- real captures


def _dnscat2_pairs(samples: Path) -> dict[tuple[str, str, int], float]:
    """Summed durations per outbound pair from the raw JSON, each uid at its longest record
    in conn.log or open_conn.log (RITA's rule), independently of the detector."""
    longest: dict[str, tuple[tuple[str, str, int], float]] = {}
    for name in ("conn.log", "open_conn.log"):
        for line in (samples / DNSCAT2 / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            orig, resp = ip_address(r["id.orig_h"]), ip_address(r["id.resp_h"])
            outbound = orig.is_private and not (resp.is_private or resp.is_multicast)
            if r["proto"] not in ("tcp", "udp") or not outbound:
                continue
            pair = (r["id.orig_h"], r["id.resp_h"], r["id.resp_p"])
            duration = r.get("duration") or 0.0
            if r["uid"] not in longest or duration > longest[r["uid"]][1]:
                longest[r["uid"]] = (pair, duration)
    totals: dict[tuple[str, str, int], float] = defaultdict(float)
    for pair, duration in longest.values():
        totals[pair] += duration
    return totals


def test_dnscat2_subset_pairs_match_an_independent_sum(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / DNSCAT2], store)
    tables = open_store(store)
    totals = _dnscat2_pairs(samples)
    # nothing in this subset stays open an hour (RITA's threshold): no finding by default
    assert max(totals.values()) < CFG.min_duration_s
    assert _run(tables) == []
    # at half an hour, exactly the pairs the raw logs sum past it, with the same durations
    cfg = LongConnectionConfig(min_duration_s=1800.0, min_score=0.0)
    found = {(f.src, f.dst, f.dst_port): f for f in _run(tables, cfg)}
    expected = {pair: total for pair, total in totals.items() if total >= 1800.0}
    assert expected
    assert set(found) == set(expected)
    for pair, total in expected.items():
        assert found[pair].evidence["total_duration_s"] == pytest.approx(total, abs=1e-3)


def test_dnscat2_open_connections_are_counted_as_open(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / DNSCAT2], store)
    cfg = LongConnectionConfig(min_duration_s=100.0, min_score=0.0)
    found = _run(open_store(store), cfg)
    closed = {
        json.loads(line)["uid"]
        for line in (samples / DNSCAT2 / "conn.log").read_text(encoding="utf-8").splitlines()
    }
    assert any(f.evidence["open_connections"] for f in found)
    for f in found:
        still_open = [u for u in f.evidence["uids"] if u not in closed]
        assert f.evidence["open_connections"] == len(still_open)


@pytest.mark.parametrize("sample", ["zeek-json/slips-test9-mixed", "zeek-tsv/rita-proxy-beacon"])
def test_benign_heavy_captures_give_nothing_above_low(
    samples: Path, tmp_path: Path, sample: str
) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    assert all(f.score < 0.5 for f in _run(open_store(store)))


# ---------------------------------------------------------------------------- hand-built logs


def test_a_six_hour_connection_is_flagged_and_half_an_hour_is_not(tmp_path: Path) -> None:
    rows = [
        conn(T0, "10.0.0.5", "203.0.113.9", 8443, duration=6 * HOUR, orig_bytes=40_000),
        conn(T0, "10.0.0.6", "203.0.113.9", 8443, duration=0.5 * HOUR),
    ]
    (finding,) = _run(open_store(store_of(tmp_path, {"conn": rows})))
    assert (finding.src, finding.dst, finding.dst_port) == ("10.0.0.5", "203.0.113.9", 8443)
    assert finding.evidence["total_duration_s"] == 6 * HOUR
    assert finding.evidence["longest_s"] == 6 * HOUR
    assert finding.evidence["kind"] == "long"
    assert (finding.last_seen - finding.first_seen).total_seconds() == 6 * HOUR
    assert finding.severity in {"low", "medium"}  # one reason: not high for six hours
    assert "6.0 h" in finding.summary


def test_the_same_uid_in_conn_open_and_conn_counts_once(tmp_path: Path) -> None:
    c = uid()
    logs = {
        "open_conn": [
            conn(T0, "10.0.0.5", "203.0.113.9", 8443, uid=c, duration=2 * HOUR),
            conn(T0, "10.0.0.5", "203.0.113.9", 8443, uid=c, duration=4 * HOUR),
            conn(T0, "10.0.0.6", "203.0.113.9", 8443, duration=3 * HOUR),  # still open
        ],
        "conn": [
            conn(T0, "10.0.0.5", "203.0.113.9", 8443, uid=c, duration=6 * HOUR),
            # internal hosts are those the endpoint tables (conn, dns, ...) show in the window
            conn(T0, "10.0.0.6", "203.0.113.9", 443, duration=1.0),
        ],
    }
    found = _by_src(_run(open_store(store_of(tmp_path, logs))))
    closed, still_open = found["10.0.0.5"], found["10.0.0.6"]
    assert closed.evidence["connections"] == 1
    assert closed.evidence["total_duration_s"] == 6 * HOUR  # not 12 h
    assert closed.evidence["open_connections"] == 0
    assert closed.evidence["uids"] == [c]
    assert still_open.evidence["open_connections"] == 1
    assert still_open.evidence["total_duration_s"] == 3 * HOUR


def test_known_long_lived_services_are_damped(tmp_path: Path) -> None:
    push, chat = uid(), uid()
    rows = [
        conn(T0, "10.0.0.5", "203.0.113.9", 8443, duration=6 * HOUR),
        conn(T0, "10.0.0.6", "17.57.146.20", 5223, duration=6 * HOUR, uid=push),  # APNs
        conn(T0, "10.0.0.7", "198.51.100.4", 443, duration=6 * HOUR, uid=chat),
        conn(T0, "10.0.0.8", "198.51.100.5", 993, duration=6 * HOUR),  # IMAP IDLE
    ]
    sessions = [tls(T0, "10.0.0.7", "198.51.100.4", "wss-primary.slack.com", uid=chat)]
    found = _by_src(_run(open_store(store_of(tmp_path, {"conn": rows, "ssl": sessions}))))
    plain = found["10.0.0.5"]
    assert "known_service" not in plain.evidence
    for src in ("10.0.0.6", "10.0.0.7", "10.0.0.8"):
        damped = found.get(src)
        assert damped is None or damped.score == pytest.approx(plain.score * CFG.service_damping)
    assert "Slack" in found["10.0.0.7"].evidence["known_service"]
    assert found["10.0.0.7"].evidence["name"] == "wss-primary.slack.com"


def test_a_destination_much_of_the_fleet_keeps_open_is_damped(tmp_path: Path) -> None:
    fleet = [f"10.0.1.{i}" for i in range(1, 13)]
    rows = [conn(T0, src, "198.51.100.200", 4443, duration=8 * HOUR) for src in fleet]
    rows.append(conn(T0, "10.0.0.5", "203.0.113.9", 4443, duration=8 * HOUR))
    found = _run(open_store(store_of(tmp_path, {"conn": rows})))
    alone = next(f for f in found if f.src == "10.0.0.5")
    shared = [f for f in found if f.dst == "198.51.100.200"]
    assert all(f.evidence["shared_destination_factor"] < 0.5 for f in shared)
    assert all(f.score < alone.score for f in shared)


def test_durations_are_summed_per_pair_and_one_long_one_weighs_more(tmp_path: Path) -> None:
    pieces = [
        conn(T0 + 120.0 * i, "10.0.0.5", "203.0.113.9", 8443, duration=100.0) for i in range(180)
    ]
    whole = [conn(T0, "10.0.0.6", "203.0.113.9", 8443, duration=18_000.0)]
    found = _by_src(_run(open_store(store_of(tmp_path, {"conn": pieces + whole}))))
    assert found["10.0.0.5"].evidence["total_duration_s"] == pytest.approx(18_000.0)
    assert found["10.0.0.5"].evidence["connections"] == 180
    assert found["10.0.0.5"].score < found["10.0.0.6"].score


def test_a_long_tunnel_through_the_proxy_counts_for_the_requested_host(tmp_path: Path) -> None:
    c = uid()
    logs = {
        "conn": [
            conn(T0, "10.0.0.5", "10.0.0.1", 3128, uid=c, duration=5 * HOUR),
            # the proxy's own upstream connection repeats the tunnel: not counted again
            conn(T0 + 0.1, "10.0.0.1", "203.0.113.9", 443, duration=5 * HOUR),
        ],
        "http": [connect(T0, "10.0.0.5", "10.0.0.1", "c2.example.net:443", uid=c)],
    }
    (finding,) = _run(open_store(store_of(tmp_path, logs)))
    assert (finding.src, finding.dst, finding.dst_port) == ("10.0.0.5", "c2.example.net", 443)
    assert finding.evidence["total_duration_s"] == 5 * HOUR


def test_configured_proxies_upstream_connections_are_not_counted(tmp_path: Path) -> None:
    rows = [conn(T0, "10.0.0.1", "203.0.113.9", 443, duration=5 * HOUR)]
    tables = open_store(store_of(tmp_path, {"conn": rows}))
    assert [f.src for f in _run(tables)] == ["10.0.0.1"]
    assert _run(tables, LongConnectionConfig(proxies=("10.0.0.1",))) == []


def test_a_strobe_is_reported(tmp_path: Path) -> None:
    rows = [conn(T0 + 0.5 * i, "10.0.0.5", "203.0.113.9", 80, duration=0.1) for i in range(1500)]
    cfg = LongConnectionConfig(strobe_per_day=1000.0)
    (finding,) = _run(open_store(store_of(tmp_path, {"conn": rows})), cfg)
    assert finding.evidence["kind"] == "strobe"
    assert finding.evidence["connections"] == 1500
    assert "strobe" in finding.summary
    assert _run(open_store(store_of(tmp_path / "again", {"conn": rows}))) == []


def test_contract_and_empty_window(tmp_path: Path) -> None:
    rows = [conn(T0, "10.0.0.5", "203.0.113.9", 8443, duration=6 * HOUR)]
    assert_contract(lambda t: _run(t), store_of(tmp_path, {"conn": rows}))


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    c = uid()
    logs = {
        "conn": [
            conn(T0, "10.0.0.5", "203.0.113.9", 8443, uid=c, duration=6 * HOUR),
            conn(T0, "10.0.0.6", "17.57.146.20", 5223, duration=9 * HOUR),
            *[
                conn(T0 + 60.0 * i, "10.0.0.7", "198.51.100.9", 443, duration=50.0)
                for i in range(90)
            ],
        ],
        "open_conn": [
            conn(T0, "10.0.0.5", "203.0.113.9", 8443, uid=c, duration=2 * HOUR),
            conn(T0, "10.0.0.8", "203.0.113.10", 22, duration=1.5 * HOUR),
        ],
    }
    assert_spark_agrees(lambda t: _run(t), store_of(tmp_path, logs), spark)
