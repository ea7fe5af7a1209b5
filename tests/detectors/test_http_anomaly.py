"""http-anomaly: odd versions, no Host header, large and identical requests, URI templates."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

from homecall.detectors import http_anomaly
from homecall.detectors.http_anomaly import HttpAnomalyConfig, anomaly_score, large_thresholds
from homecall.detectors.uri_templates import template
from homecall.findings import Finding
from homecall.intel.domains import registered_domain
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.zeek_http import T0, Request, http_store
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

SIMDA = "zeek-tsv/stratosphere-security-datasets/005-zeek-scenario-malicious"
BENIGN = [f"10.0.1.{i}" for i in range(100, 106)]
OLD, MALFORMED, BARE, REPEAT, UPLOAD, BOT = (f"10.0.1.{i}" for i in range(10, 16))
SITES = [(f"site{i}.example.org", f"93.184.216.{i}") for i in range(1, 9)]


def browsing(src: str, start: float) -> list[Request]:
    """Ordinary HTTP/1.1: pages and assets of a few sites, small POSTs of varied sizes."""
    out = [
        Request(start + 11 * i, src, "93.184.216.99", "/v1/events", host="telemetry.example.com",
                method="POST", request_bytes=100 + 37 * i % 1900)
        for i in range(60)
    ]  # fmt: skip
    for i, (name, ip) in enumerate(SITES * 3):
        out.append(Request(start + 7 * i, src, ip, f"/news/{1000 + i}.html", host=name))
        out.append(Request(start + 7 * i + 1, src, ip, "/favicon.ico", host=name))
        if i % 4 == 0:
            out.append(
                Request(start + 7 * i + 2, src, ip, "/comment", host=name, method="POST",
                        request_bytes=300 + 37 * i)
            )  # fmt: skip
    return out


def scenario() -> list[Request]:
    fleet = [r for n, src in enumerate(BENIGN) for r in browsing(src, T0 + n)]
    odd = [
        *browsing(OLD, T0 + 50),
        *(
            Request(T0 + 600 + 30 * i, OLD, "198.51.100.20", "/status", host="legacy.example.net",
                    version="1.0")
            for i in range(12)
        ),
        *(
            Request(T0 + 700 + 60 * i, MALFORMED, "198.51.100.21", "/c", host="c2.example.net",
                    version="1.2")
            for i in range(30)
        ),
        *(
            Request(T0 + 800 + 60 * i, BARE, "198.51.100.30", "/gate", host=None, method="POST",
                    request_bytes=64 + i)
            for i in range(20)
        ),
        *(
            Request(T0 + 900 + 60 * i, REPEAT, "198.51.100.40", "/submit.php",
                    host="sync.example.net", method="POST", request_bytes=517)
            for i in range(40)
        ),
        *(
            Request(T0 + 1000 + 600 * i, UPLOAD, "198.51.100.50", "/upload",
                    host="files.example.net", method="POST", request_bytes=80_000_000)
            for i in range(3)
        ),
        *(
            Request(T0 + 1100 + 30 * i, BOT, f"203.0.113.{1 + i % 2}", f"/gate.php?id={4000 + i}",
                    host=f"qx{i}vbn.com")
            for i in range(8)
        ),
    ]  # fmt: skip
    return fleet + odd


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return http_store(tmp_path_factory.mktemp("http-anomaly"), scenario())


def run(tables: Tables) -> list[Finding]:
    return list(http_anomaly.DETECTOR.run(tables, HttpAnomalyConfig()))


def by_kind(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.src, f.evidence["kind"]): f for f in findings}


def test_each_kind_is_found_where_it_was_put(store: Store) -> None:
    found = by_kind(run(open_store(store)))
    malformed = found[(MALFORMED, "version")]
    assert (malformed.dst, malformed.evidence["version"]) == ("198.51.100.21", "1.2")
    bare = found[(BARE, "missing-host")]
    assert (bare.dst, bare.evidence["requests"], bare.evidence["missing_host_ratio"]) == (
        "198.51.100.30",
        20,
        1.0,
    )
    repeat = found[(REPEAT, "repeated-size")]
    assert (repeat.dst, repeat.evidence["request_bytes"], repeat.evidence["requests"]) == (
        "198.51.100.40",
        517,
        40,
    )
    upload = found[(UPLOAD, "large-request")]
    assert (upload.dst, upload.evidence["max_request_bytes"]) == ("198.51.100.50", 80_000_000)
    bot = found[(BOT, "template")]
    assert bot.evidence["template"] == "/gate.php?id={v}"
    assert bot.evidence["domain_count"] == 8
    assert bot.evidence["address_count"] == 2
    assert bot.dst in ("203.0.113.1", "203.0.113.2")
    for f in found.values():
        assert f.src in f.summary
        assert (f.dst or "") in f.summary
        assert f.evidence["uids"]


def test_benign_hosts_and_a_lone_http10_stay_quiet(store: Store) -> None:
    findings = run(open_store(store))
    assert not [f for f in findings if f.src in BENIGN]
    old = [f for f in findings if f.src == OLD]
    assert all(f.score < 0.5 for f in old)  # one weak reason: HTTP/1.0 to one server
    assert not [f for f in findings if f.evidence.get("template") == "/favicon.ico"]


def test_contract(store: Store) -> None:
    assert_contract(run, store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(store: Store, spark: object) -> None:
    assert_spark_agrees(run, store, spark)


def _raw_http(path: Path) -> list[dict[str, str]]:
    """A Zeek TSV log as dicts, read here independently of homecall's reader."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = csv.reader((line for line in lines if not line.startswith("#")), delimiter="\t")
    return [dict(zip(fields, row, strict=True)) for row in rows]


def test_simda_login_template_across_many_domains(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / SIMDA], store)
    findings = run(open_store(store))
    raw = [r for r in _raw_http(samples / SIMDA / "http.log") if r["uri"] == "/login.php"]
    hosts = {r["host"] for r in raw if r["host"] != "-"}
    domains = {registered_domain(h) for h in hosts}
    busiest, busiest_n = Counter(r["id.resp_h"] for r in raw).most_common(1)[0]
    (login,) = [f for f in findings if f.evidence.get("template") == "/login.php"]
    assert login.src == "192.168.1.116"  # PROVENANCE: the infected host
    assert login.evidence["host_count"] == len(hosts)
    assert login.evidence["domain_count"] == len(domains)
    assert login.evidence["requests"] == len(raw)
    assert login.evidence["address_count"] == len({r["id.resp_h"] for r in raw})
    assert (login.dst, login.evidence["top_destination_requests"]) == (busiest, busiest_n)
    assert login.dst == "23.253.126.58"  # PROVENANCE: the HTTP C2
    listed = login.evidence["domains"]
    assert len(listed) == HttpAnomalyConfig().max_domains
    assert set(listed) <= domains
    assert login.severity in ("high", "critical")
    assert findings[0] is login  # the strongest finding of the capture


@pytest.mark.parametrize(
    "sample",
    [
        "zeek-tsv/rita-proxy-beacon",
        "zeek-json/slips-test9-mixed",
        "zeek-json/rita-dnscat2-subset",
        "zeek-tsv/stratosphere-security-datasets/001-zeek-scenario-malicious",
        "zeek-tsv/stratosphere-security-datasets/003-zeek-scenario-malicious",
    ],
)
def test_benign_heavy_samples_give_no_high_findings(
    samples: Path, sample: str, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    assert not [f for f in run(open_store(store)) if f.score >= 0.5]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/login.php", "/login.php"),
        ("/gate.php?id=123&os=win7", "/gate.php?id={v}&os=win{v}"),
        ("/news/2026/11/some-title.html", "/news/{v}/{v}/some-title.html"),
        ("/i/aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=", "/i/{v}"),
        ("/t?sid=9f8e7d6c5b4a3928", "/t?sid={v}"),
        ("/jquery-3.3.1.min.js", "/jquery-{v}.{v}.{v}.min.js"),
    ],
)
def test_templates(uri: str, expected: str) -> None:
    path, _, query = uri.partition("?")
    rows = ibis.memtable(
        pa.table(
            {
                "path": [path],
                "query": pa.array([query or None], pa.string()),
                "uri": [uri],
                "via_proxy": [False],
            }
        )
    )
    con = ibis.duckdb.connect()
    assert con.to_pyarrow(rows.select(t=template(rows))).column("t").to_pylist() == [expected]


def test_large_thresholds_follow_the_fleet_and_keep_the_floor() -> None:
    cfg = HttpAnomalyConfig()
    histogram = pa.table(
        {
            "method": ["POST"] * 3 + ["PUT"],
            "bucket": [16, 18, 24, 30],  # 64 KiB, 256 KiB, 16 MiB, 1 GiB
            "n": [900, 95, 5, 3],
        }
    )
    limits = large_thresholds(histogram, cfg)
    # POST: 99 % of the 1,000 requests are in the 256 KiB bucket or below; its upper edge is
    # 512 KiB, and ten times that is above the 1 MB floor
    assert limits["POST"] == cfg.large_factor * 2**19
    # PUT: three requests are too few to describe the fleet: only the floor applies
    assert limits["PUT"] == cfg.large_min_bytes


def test_anomaly_score_rises_with_volume_and_corroboration() -> None:
    cfg = HttpAnomalyConfig()
    one = anomaly_score(0.5, 1, 1.0, 0.0, cfg)
    many = anomaly_score(0.5, 1000, 1.0, 0.0, cfg)
    backed = anomaly_score(0.5, 1000, 1.0, 0.8, cfg)
    shared = anomaly_score(0.5, 1000, 0.1, 0.0, cfg)
    assert shared < one < many < backed <= 1.0
    assert many == pytest.approx(cfg.max_score * 0.5)


def _binetflow(path: Path, flows: list[tuple[str, str, int, int, int, int, int, str]]) -> Path:
    """An Argus binetflow file: (src, dst, dport, src_bytes, tot_bytes, src_pkts, tot_pkts,
    state) per flow, one a second from 2024-05-02 10:00."""
    lines = ["StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,"
             "TotBytes,SrcBytes,SrcPkts,Label"]  # fmt: skip
    for i, (src, dst, port, src_bytes, tot, src_pkts, pkts, state) in enumerate(flows):
        lines.append(
            f"2024/05/02 10:{i // 60:02d}:{i % 60:02d}.000000,0.4,tcp,{src},{40000 + i},->,"
            f"{dst},{port},{state},0,0,{pkts},{tot},{src_bytes},{src_pkts},"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def flow_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Flow records only: one host repeating a request, a browser-like host whose sizes vary,
    and a host whose connections are all refused (every SYN the same size)."""
    root = tmp_path_factory.mktemp("flows")
    sizes = [400 + (i * 7919) % 20_000 for i in range(40)]
    flows = [("10.0.0.5", "198.51.100.9", 80, 550 + (i % 2) * 4, 1023, 5, 10, "FSPA_FSPA")
             for i in range(40)]  # fmt: skip
    flows += [("10.0.0.6", "198.51.100.10", 80, s, s + 5000, 9, 20, "FSPA_FSPA") for s in sizes]
    flows += [("10.0.0.7", "198.51.100.11", 80, 60, 114, 1, 2, "S_RA") for _ in range(40)]
    store = Store(root / "store")
    import_paths([_binetflow(root / "flows.binetflow", flows)], store)
    return store


def test_repeated_connection_sizes_in_flow_records(flow_store: Store) -> None:
    found = run(open_store(flow_store))
    assert [(f.src, f.evidence["kind"]) for f in found] == [("10.0.0.5", "repeated-flow-size")]
    (finding,) = found
    assert (finding.dst, finding.dst_port) == ("198.51.100.9", 80)
    assert finding.evidence["connections"] == 40  # 550 and 554 bytes: one size (16-byte step)
    assert (finding.evidence["bytes_out_min"], finding.evidence["bytes_out_max"]) == (550, 554)
    assert finding.evidence["size_share_ratio"] == 1.0
    assert len(finding.evidence["uids"]) == 20


@pytest.mark.spark
def test_flow_sizes_agree_on_spark(flow_store: Store, spark: object) -> None:
    assert_spark_agrees(run, flow_store, spark)
