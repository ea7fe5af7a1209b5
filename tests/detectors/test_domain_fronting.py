from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from homecall.config import Config
from homecall.detectors import domain_fronting
from homecall.detectors.domain_fronting import DomainFrontingConfig, fronting_score, is_mismatch
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.schema import SCHEMAS
from homecall.store.tables import WHOLE_STORE, Tables, connect, open_tables
from tests.detectors import tls_logs
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

log = logging.getLogger(__name__)
CFG = DomainFrontingConfig()


def _run(tables: Tables, cfg: DomainFrontingConfig = CFG) -> list[Finding]:
    return list(domain_fronting.DETECTOR.run(tables, cfg))


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return tls_logs.store_of(tmp_path_factory.mktemp("fronting-capture"))


@pytest.mark.parametrize(
    ("front", "host", "mismatch"),
    [
        ("front.example.net", "c2.azureedge.net", True),
        ("www.example.com", "example.com", False),  # www. and the bare name: one site
        ("a.cdn.example.com", "b.static.example.com", False),  # one registered domain
        ("shop.customer.com", "customer.azureedge.net", False),  # one CDN customer's two names
        ("d111111abcdef8.cloudfront.net", "d222222abcdef8.cloudfront.net", True),  # two customers
        ("news.example.org", "news.example.top", True),  # same label, no CDN: two registrants
        ("192.0.2.1", "c2.example.com", False),  # an address has no domain to compare
    ],
)
def test_a_mismatch_is_across_registered_domains(front: str, host: str, mismatch: bool) -> None:
    assert is_mismatch(front, host) is mismatch


def _score(kind: str = "sni-host", requests: int = 1, **given: Any) -> float:
    flags = {"cdn": False, "uncovered": False, "coalescing": False, "shared": 1.0}
    return fronting_score(kind, requests, **{**flags, **given}, cfg=CFG)


def test_fronting_scores_rank_the_evidence() -> None:
    assert _score("sni-host") >= 0.75  # one connection's SNI and Host disagree: "high"
    assert _score("sni-host") > _score("connect-sni") > _score("proxy-bump")
    assert _score(requests=50) > _score(requests=1)
    assert _score(cdn=True) > _score()
    assert _score(uncovered=True) > _score()
    assert _score(coalescing=True) < _score()
    assert _score(shared=0.5) < _score()
    assert _score("proxy-bump", requests=10_000, cdn=True, uncovered=True) <= 1.0


def test_a_host_fronted_through_a_cdn_is_flagged(capture: Store) -> None:
    found = {f.src: f for f in _run(open_store(capture))}
    fronted = found[tls_logs.FRONTED_HOST]
    assert (fronted.dst, fronted.dst_port) == (tls_logs.FRONTED, 443)
    assert fronted.evidence["sni"] == tls_logs.FRONT
    assert fronted.evidence["kind"] == "sni-host"
    assert fronted.evidence["cdn"] == "Azure CDN"
    assert fronted.evidence["cert_covers_front"] is True
    assert fronted.severity in ("high", "critical")
    assert len(fronted.evidence["uids"]) == 8


def test_one_site_under_two_names_is_not_fronting(capture: Store) -> None:
    flagged = {f.src for f in _run(open_store(capture), DomainFrontingConfig(min_score=0.0))}
    assert tls_logs.WWW_HOST not in flagged
    assert tls_logs.CUSTOMER_HOST not in flagged
    assert tls_logs.CS_HOST not in flagged  # no HTTP seen, nothing to compare


def test_a_connect_carrying_tls_for_another_domain_is_flagged(capture: Store) -> None:
    tunnel = {f.src: f for f in _run(open_store(capture))}[tls_logs.TUNNEL_HOST]
    assert tunnel.dst == tls_logs.HIDDEN
    assert tunnel.evidence["kind"] == "connect-sni"
    assert tunnel.evidence["connect_host"] == tls_logs.ALLOWED


def test_the_capture_follows_the_contract(capture: Store) -> None:
    assert_contract(lambda t: domain_fronting.DETECTOR.run(t, CFG), capture)


@pytest.mark.spark
def test_duckdb_and_spark_agree(capture: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: domain_fronting.DETECTOR.run(t, CFG), capture, spark)


def _proxy_row(ts: float, line: int, client: str, method: str, target: str) -> dict[str, Any]:
    """One decrypting proxy's log line as the http table holds it (orig = client, resp = the
    requested host and port)."""
    host, port = (target.rsplit(":", 1)[0], 443) if method == "CONNECT" else (target, 443)
    host = host.removeprefix("https://").split("/", 1)[0]
    return {
        "ts": int(ts * 1_000_000),
        "uid": f"Sproxylog-{line}",
        "orig_ip": client,
        "orig_port": None,
        "resp_ip": host,
        "resp_port": port,
        "method": method,
        "uri": target,
        "status_code": 200,
        "proxy": "squid",
        "proxy_action": "TCP_TUNNEL" if method == "CONNECT" else "TCP_MISS",
        "denied": False,
    }


def _proxy_store(folder: Path, rows: list[dict[str, Any]]) -> Store:
    """A store holding `rows` in its http table, staged as one source (no reader involved)."""
    source = folder / "access.log"
    source.write_text("\n".join(r["uid"] for r in rows) + "\n", encoding="utf-8")
    batch = pa.Table.from_pylist(rows, schema=SCHEMAS["http"]).to_batches()[0]
    store = Store(folder / "store")
    with store.importing() as job:
        job.add(source, lambda: "f" * 64, "squid", [("http", batch)])
    return store


def test_a_decrypting_proxy_shows_requests_outside_their_tunnel(tmp_path: Path) -> None:
    day, rows = tls_logs.at("2024-03-05 09:00:00"), []
    for i in range(6):
        t = day + 300 * i
        rows += [  # the implant: CONNECT to the front, requests for the hidden host
            ("10.3.0.5", "CONNECT", "front.example.net:443", t),
            ("10.3.0.5", "GET", f"https://c2.azureedge.net/poll?i={i}", t + 1.5),
            # a browser: a page and its assets under one registered domain
            ("10.3.0.6", "CONNECT", "www.example.com:443", t + 2),
            ("10.3.0.6", "GET", "https://static.example.com/app.js", t + 2.5),
            # a browser reusing a tunnel it opened earlier, next to a new one
            ("10.3.0.7", "CONNECT", "cdn.other.org:443", day - 60 if i == 0 else t + 3),
            ("10.3.0.7", "CONNECT", "news.example.org:443", t + 3),
            ("10.3.0.7", "GET", "https://cdn.other.org/a.css", t + 3.2),
        ]
    ordered = sorted(rows, key=lambda r: r[3])
    store = _proxy_store(
        tmp_path, [_proxy_row(ts, n, c, m, u) for n, (c, m, u, ts) in enumerate(ordered)]
    )
    findings = _run(open_tables(store, Config().internal, connect(), WHOLE_STORE))
    assert [(f.src, f.dst, f.evidence["kind"]) for f in findings] == [
        ("10.3.0.5", "c2.azureedge.net", "proxy-bump")
    ]
    assert findings[0].evidence["connect_host"] == "front.example.net"
    assert findings[0].evidence["requests"] == 6


def test_rita_proxy_beacon_connects_match_their_sni(samples: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / "zeek-tsv/rita-proxy-beacon"], store)
    assert _run(open_tables(store, Config().internal, connect(), WHOLE_STORE)) == []


@pytest.mark.parametrize(
    "sample", ["zeek-json/slips-test9-mixed", "zeek-json/wrccdc2018-zed-sample"]
)
def test_benign_heavy_samples_show_no_fronting(samples: Path, sample: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    import_paths([samples / sample], store)
    findings = _run(open_tables(store, Config().internal, connect(), WHOLE_STORE))
    for f in findings:
        log.info("%s: %.3f %s %s", sample, f.score, f.severity, f.summary)
    assert findings == []  # slips: no uid is in both ssl.log and http.log; wrccdc: no http.log
