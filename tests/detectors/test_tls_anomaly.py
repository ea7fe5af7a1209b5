from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from homecall.config import Config
from homecall.detectors import tls_anomaly
from homecall.detectors.tls_anomaly import (
    CERT_ALERTS,
    TlsAnomalyConfig,
    name_covered,
    noisy_or,
    tls_score,
)
from homecall.errors import ConfigError, MalformedInputError
from homecall.findings import Finding
from homecall.intel import tls_intel
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import WHOLE_STORE, Tables, connect, open_tables
from tests.detectors import tls_logs
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

log = logging.getLogger(__name__)
CFG = TlsAnomalyConfig()
RANK = ("info", "low", "medium", "high", "critical")


def _run(tables: Tables, cfg: TlsAnomalyConfig = CFG) -> list[Finding]:
    return list(tls_anomaly.DETECTOR.run(tables, cfg))


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return tls_logs.store_of(tmp_path_factory.mktemp("tls-capture"))


def _sample(samples: Path, name: str, tmp_path_factory: pytest.TempPathFactory) -> Tables:
    store = Store(tmp_path_factory.mktemp(name.replace("/", "-")) / "store")
    import_paths([samples / name], store)
    return open_tables(store, Config().internal, connect(), WHOLE_STORE)


@pytest.mark.parametrize(
    ("name", "san", "subject", "covered"),
    [
        ("api.wild.example.com", ["*.wild.example.com"], None, True),
        ("wild.example.com", ["*.wild.example.com"], None, False),  # * is one label, not zero
        ("a.b.wild.example.com", ["*.wild.example.com"], None, False),  # ...nor two
        ("example.com", ["*.com"], None, False),  # a wildcard over a public suffix covers nothing
        ("WWW.Example.COM.", ["www.example.com"], None, True),  # case and the root dot
        ("www.example.com", [], "CN=www.example.com,O=Example", True),  # subject CN counts
        ("www.example.com", ["example.com"], "CN=mail.example.com", False),
        ("evil.example.net", ["*.example.com", "example.com"], "CN=example.com", False),
    ],
)
def test_certificate_names_cover_a_host_by_rfc_6125(
    name: str, san: list[str], subject: str | None, covered: bool
) -> None:
    assert name_covered(name, san, subject) is covered


def test_noisy_or_combines_independent_evidence() -> None:
    assert noisy_or([]) == 0.0
    assert noisy_or([0.5, 0.5]) == pytest.approx(0.75)
    assert noisy_or([0.3, 0.0]) == pytest.approx(0.3)


def _score(**given: Any) -> float:
    args = {"list_weight": 0.0, "listed_sessions": 0, "trust": 0.0, "other": 0.0}
    return tls_score(**{**args, "flagged_sessions": 1, **given, "cfg": CFG})


def test_a_list_hit_outranks_every_anomaly_and_repetition_raises_both() -> None:
    anomalies = _score(trust=1.0, other=1.0, flagged_sessions=10_000)
    assert anomalies == pytest.approx(CFG.anomaly_max_score)  # capped: "medium" at most
    listed_once = _score(list_weight=0.95, listed_sessions=1)
    assert listed_once > anomalies
    assert _score(list_weight=0.95, listed_sessions=50) > listed_once
    assert _score(trust=0.5, flagged_sessions=50) > _score(trust=0.5, flagged_sessions=1)
    expired_alone = _score(other=CFG.validity_weight, flagged_sessions=10_000)
    assert expired_alone < 0.5  # expired alone is at most "low"


def test_shipped_list_entries_cite_a_source_and_licence() -> None:
    entries = list(tls_intel.shipped())
    assert entries
    for entry in entries:
        assert entry.source.startswith("https://"), entry
        assert entry.licence, entry
        assert entry.kind in tls_intel.KINDS


@pytest.mark.parametrize(
    ("fingerprint", "serial"),
    [
        (tls_logs.CS_SHA256, None),  # Zeek >= 5: x509 fingerprint is the SHA-256
        ("6E:CE:5E:CE:41:92:68:3D:2D:84:E2:5B:0B:A7:E0:4F:9C:B7:EB:7C", None),  # Suricata SHA-1
        ("Fq1aw54Vd4e3bGmhK3", "08BB00EE"),  # older Zeek: a file id, and Zeek's serial
        (None, "08:BB:00:EE"),  # Suricata's serial
    ],
)
def test_the_cobalt_strike_default_certificate_matches_in_every_sensors_form(
    fingerprint: str | None, serial: str | None
) -> None:
    hits = tls_intel.shipped().match_certificate(fingerprint, serial, None, None)
    assert hits
    assert "Cobalt Strike" in hits[0].label


def test_subjects_match_whatever_the_attribute_order_and_spacing() -> None:
    zeek = "CN=P18055077,OU=Jethpro,O=Pajfds,L=Minnetonka,ST=Minnesota,C=US"
    hits = tls_intel.shipped().match_certificate(None, None, zeek, zeek)
    assert [h.label for h in hits] == ["PoshC2 default certificate"]
    cn = tls_intel.shipped().match_certificate(None, None, "O=x, CN=AsyncRAT Server", "CN=y")
    assert [h.kind for h in cn] == ["subject_cn"]


def test_a_user_list_reads_in_the_shipped_layout_and_as_sslbl_exports(tmp_path: Path) -> None:
    mine = tmp_path / "mine.tsv"
    mine.write_text("# ours\nsha256\t" + "22" * 32 + "\tour red team\n", encoding="utf-8")
    sslbl = tmp_path / "sslblacklist.csv"
    sslbl.write_text(
        "################\n# Listingdate,SHA1,Listingreason\n"
        "2024-09-02 05:18:33,be4d4f077bdd90618367eb2ab88f9f3074ccb7aa,AsyncRAT C&C\n",
        encoding="utf-8",
    )
    ours = tls_intel.read_list_file(mine, "key")
    assert [(e.kind, e.confidence, e.source) for e in ours] == [("sha256", "medium", "user list")]
    listed = tls_intel.read_list_file(sslbl, "key")
    hit = listed.match_certificate("be4d4f077bdd90618367eb2ab88f9f3074ccb7aa", None, None, None)
    assert [h.label for h in hit] == ["AsyncRAT C&C (abuse.ch SSLBL)"]


def test_a_bad_user_list_line_is_named_by_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("# header\nsha1\tabc\tnot a hash\n", encoding="utf-8")
    with pytest.raises(MalformedInputError) as error:
        tls_intel.read_list_file(bad, "key")
    assert (error.value.line, "40 hex digits" in error.value.reason) == (2, True)
    with pytest.raises(ConfigError):
        tls_intel.read_list_file(tmp_path / "missing.tsv", "detectors.tls-anomaly.x")


def _by_src(findings: list[Finding]) -> dict[str, Finding]:
    return {f.src: f for f in findings}


def test_the_cobalt_strike_default_certificate_is_critical_or_high(capture: Store) -> None:
    found = _by_src(_run(open_store(capture)))
    cs = found[tls_logs.CS_HOST]
    assert (cs.dst, cs.dst_port) == (tls_logs.CS_SERVER, 443)  # no SNI: the address
    assert cs.severity in ("high", "critical")
    assert {"listed", "self-signed"} <= set(cs.evidence["reasons"])
    assert f"sha256 {tls_logs.CS_SHA256}" in cs.evidence["list_matches"]
    assert cs.evidence["cert_serial"] == "08BB00EE"
    assert len(cs.evidence["uids"]) == 12


def test_an_expired_certificate_alone_is_low(capture: Store) -> None:
    expired = _by_src(_run(open_store(capture)))[tls_logs.EXPIRED_HOST]
    assert expired.dst == tls_logs.EXPIRED_NAME
    assert expired.evidence["reasons"] == ["expired"]
    assert expired.severity == "low"


def test_valid_certificates_are_not_flagged(capture: Store) -> None:
    flagged = {f.src for f in _run(open_store(capture), TlsAnomalyConfig(min_score=0.0))}
    # a wildcard covering its SNI, and the fronting hosts' own valid certificates
    assert flagged.isdisjoint(
        {tls_logs.WILDCARD_HOST, tls_logs.FRONTED_HOST, tls_logs.WWW_HOST, tls_logs.CUSTOMER_HOST}
    )


def test_a_user_list_adds_its_certificates(capture: Store, tmp_path: Path) -> None:
    mine = tmp_path / "ours.tsv"
    mine.write_text(f"sha256\t{'22' * 32}\tpentest C2\thigh\n", encoding="utf-8")
    found = _by_src(_run(open_store(capture), TlsAnomalyConfig(extra_list_file=str(mine))))
    assert found[tls_logs.WILDCARD_HOST].evidence["list_label"] == "pentest C2"


def test_the_capture_follows_the_contract(capture: Store) -> None:
    assert_contract(lambda t: tls_anomaly.DETECTOR.run(t, CFG), capture)


@pytest.mark.spark
def test_duckdb_and_spark_agree(capture: Store, spark: object) -> None:
    assert_spark_agrees(lambda t: tls_anomaly.DETECTOR.run(t, CFG), capture, spark)


def test_rita_proxy_beacon_refused_certificate_is_flagged(
    samples: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    findings = _run(_sample(samples, "zeek-tsv/rita-proxy-beacon", tmp_path_factory))
    by_dst = {(f.src, f.dst): f for f in findings}
    beacon = by_dst[("10.136.0.18", "www.honestimnotevil.com")]  # PROVENANCE.txt
    assert beacon.dst_port == 443  # the CONNECT's port, not the proxy's 3128
    assert "refused" in beacon.evidence["reasons"]
    assert beacon.evidence["last_alert"] == "unknown_ca"
    assert beacon.evidence["established_sessions"] == 0
    assert ("10.136.0.18", "www.google.com") not in by_dst  # the benign contrast


def _raw(folder: Path, name: str) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob(f"{name}.*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            yield from (json.loads(line) for line in lines if line.strip())


def _epoch(value: Any) -> float:
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    return float(value)


def _supported(reason: str, record: dict[str, Any], cert: dict[str, Any] | None) -> bool:
    """Does this raw ssl.log record (and its raw x509 leaf) show `reason`?"""
    status = record.get("validation_status") or ""
    if reason == "untrusted":
        return status not in ("", "ok", "self signed certificate") and "valid" not in status
    if reason == "self-signed":
        own = cert is not None and cert["certificate.subject"] == cert["certificate.issuer"]
        return status == "self signed certificate" or own
    if reason == "refused":
        return record.get("last_alert") in CERT_ALERTS and not record.get("established")
    if reason == "mismatch" and cert is not None and record.get("server_name"):
        return not name_covered(
            record["server_name"], cert.get("san.dns"), cert["certificate.subject"]
        )
    if reason in ("expired", "not-yet-valid") and cert is not None:
        ts = _epoch(record["ts"])
        if reason == "expired":
            return ts > _epoch(cert["certificate.not_valid_after"])
        return ts < _epoch(cert["certificate.not_valid_before"])
    return False


@pytest.mark.parametrize(
    "sample", ["zeek-json/slips-test9-mixed", "zeek-json/wrccdc2018-zed-sample"]
)
def test_benign_heavy_samples_flag_only_what_the_raw_logs_show(
    samples: Path, sample: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    findings = _run(_sample(samples, sample, tmp_path_factory))
    for f in findings:
        log.info("%s: %.3f %s %s", sample, f.score, f.severity, f.summary)
    assert not [f for f in findings if f.severity == "critical"]
    certs = {c.get("fingerprint") or c.get("id"): c for c in _raw(samples / sample, "x509")}
    ssl = list(_raw(samples / sample, "ssl"))
    for f in findings:
        records = [
            r
            for r in ssl
            if r["id.orig_h"] == f.src and f.dst in (r.get("server_name"), r["id.resp_h"])
        ]
        for reason in f.evidence["reasons"]:
            assert any(
                _supported(reason, r, certs.get(next(iter(_chain(r)), None))) for r in records
            ), (f.summary, reason)
    # slips' capture has epoch-relative times (1970): every certificate looks "not yet valid",
    # which says the sensor's clock, not the servers
    assert not [f for f in findings if "not-yet-valid" in f.evidence["reasons"]]


def _chain(record: dict[str, Any]) -> list[str]:
    return record.get("cert_chain_fps") or record.get("cert_chain_fuids") or []
